-- The demo's `orders` target on a local PostgreSQL, with an admin login that holds only what
-- elevate needs (see README.md). Run as a superuser:
--   psql postgres://postgres@127.0.0.1:5432/postgres -v admin_password="'choose-one'" -f postgres-target.sql
CREATE DATABASE orders;
CREATE ROLE orders_owner NOLOGIN;
CREATE ROLE orders_readonly NOLOGIN;
CREATE ROLE orders_admin NOLOGIN;
CREATE ROLE elevate_admin LOGIN CREATEROLE PASSWORD :admin_password;
GRANT orders_readonly, orders_admin TO elevate_admin WITH ADMIN OPTION;
GRANT orders_owner TO elevate_admin;
REVOKE CONNECT ON DATABASE orders FROM PUBLIC;
GRANT CONNECT ON DATABASE orders TO elevate_admin, orders_readonly, orders_admin;

\connect orders
REVOKE ALL ON SCHEMA public FROM PUBLIC;
CREATE TABLE public.orders (id int PRIMARY KEY, customer text NOT NULL, total numeric NOT NULL);
INSERT INTO public.orders VALUES (1, 'ada', 42.00), (2, 'grace', 17.50);
ALTER TABLE public.orders OWNER TO orders_owner;
GRANT USAGE ON SCHEMA public TO orders_readonly, orders_admin;
GRANT SELECT ON public.orders TO orders_readonly;
GRANT SELECT, INSERT, UPDATE, DELETE ON public.orders TO orders_admin;
