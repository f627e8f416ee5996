//! SSH access (DESIGN §4): a user CA per tenant, certificates bounded by the grant, revocation
//! through an OpenSSH KRL, and the client side (`elevate ssh`, ssh-agent).

pub mod agent;
pub mod ca;
pub mod cert;
pub mod krl;
