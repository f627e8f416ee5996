//! A real OpenSSH server for the certificate tests: its own host key, a free loopback port,
//! `TrustedUserCAKeys` and `RevokedKeys` written by `elevate host sync` from the test server, and
//! an `AuthorizedPrincipalsFile` per unix user. Logs go to `sshd.log` in its directory.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::{TestApp, temp_dir};

pub const BIN: &str = env!("CARGO_BIN_EXE_elevate");
const SSHD: &str = "/usr/sbin/sshd";

pub struct Sshd {
    child: Child,
    pub port: u16,
    pub dir: PathBuf,
    /// Where `host sync` writes user-ca.pub and revoked.krl.
    pub etc: PathBuf,
    /// The unix account tests log in as (the one running the tests).
    pub user: String,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn unix_user() -> String {
    let out = Command::new("id").arg("-un").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `elevate host sync` against the test server, as a host would run it.
pub fn host_sync(app: &TestApp, tenant: &str, dir: &Path) -> Output {
    Command::new(BIN)
        .args([
            "host", "sync", "--server", &app.base, "--tenant", tenant, "--dir",
        ])
        .arg(dir)
        .arg("--ca-cert")
        .arg(app.db.dir.join(elevate::web::tls::DEV_CERT_FILE))
        .env_remove("ELEVATE_SERVER")
        .output()
        .unwrap()
}

impl Sshd {
    /// Starts sshd trusting `tenant`'s CA; `principals` may log in as the current unix user.
    pub fn start(app: &TestApp, tenant: &str, principals: &[&str]) -> Sshd {
        Self::start_with(app, tenant, principals, "")
    }

    /// [`Sshd::start`] with more lines of `sshd_config` (a `ForceCommand`, say).
    pub fn start_with(app: &TestApp, tenant: &str, principals: &[&str], extra: &str) -> Sshd {
        assert!(
            Path::new(SSHD).exists(),
            "the SSH tests need OpenSSH's server: apt-get install -y openssh-server (.ci/run does)"
        );
        let dir = temp_dir("sshd");
        let etc = dir.join("etc");
        let out = host_sync(app, tenant, &etc);
        assert!(
            out.status.success(),
            "host sync: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let host_key = dir.join("host_ed25519");
        let st = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&host_key)
            .status()
            .unwrap();
        assert!(st.success());
        let user = unix_user();
        std::fs::create_dir_all(dir.join("principals")).unwrap();
        std::fs::write(
            dir.join("principals").join(&user),
            principals
                .iter()
                .map(|p| format!("{p}\n"))
                .collect::<String>(),
        )
        .unwrap();
        // Privilege separation needs this directory when sshd runs as root.
        let _ = std::fs::create_dir_all("/run/sshd");
        for _ in 0..5 {
            let port = free_port();
            let config = dir.join("sshd_config");
            std::fs::write(
                &config,
                format!(
                    "ListenAddress 127.0.0.1:{port}\n\
                     HostKey {host}\n\
                     PidFile none\n\
                     UsePAM no\n\
                     StrictModes no\n\
                     PermitRootLogin prohibit-password\n\
                     PubkeyAuthentication yes\n\
                     PasswordAuthentication no\n\
                     KbdInteractiveAuthentication no\n\
                     AuthorizedKeysFile none\n\
                     TrustedUserCAKeys {etc}/user-ca.pub\n\
                     RevokedKeys {etc}/revoked.krl\n\
                     AuthorizedPrincipalsFile {dir}/principals/%u\n\
                     LogLevel VERBOSE\n\
                     {extra}\n",
                    host = host_key.display(),
                    etc = etc.display(),
                    dir = dir.display(),
                ),
            )
            .unwrap();
            let log = std::fs::File::create(dir.join("sshd.log")).unwrap();
            let mut child = Command::new(SSHD)
                .args(["-D", "-e", "-f"])
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Sshd {
                        child,
                        port,
                        dir,
                        etc,
                        user,
                    };
                }
                if child.try_wait().unwrap().is_some() {
                    break; // port taken meanwhile, or a config error: see the log
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!(
            "sshd did not start: {}",
            std::fs::read_to_string(dir.join("sshd.log")).unwrap_or_default()
        );
    }

    /// `ssh` options for a non-interactive login to this server with nothing but the given key.
    pub fn client_options(&self) -> Vec<String> {
        [
            "-F",
            "/dev/null",
            "-p",
            &self.port.to_string(),
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
            "-o",
            "ConnectTimeout=10",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    /// Logs in with `key` + `cert` as `user` and runs `command`.
    pub fn login(&self, key: &Path, cert: &Path, user: &str, command: &str) -> Output {
        Command::new("ssh")
            .args(self.client_options())
            .args(["-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none", "-i"])
            .arg(key)
            .arg("-o")
            .arg(format!("CertificateFile={}", cert.display()))
            .arg(format!("{user}@127.0.0.1"))
            .arg(command)
            .output()
            .unwrap()
    }

    /// True when a login with `cert` runs `echo` and prints its marker.
    pub fn accepts(&self, key: &Path, cert: &Path) -> bool {
        let out = self.login(key, cert, &self.user, "echo elevate-login-ok");
        let ok = out.status.success()
            && String::from_utf8_lossy(&out.stdout).contains("elevate-login-ok");
        if !ok {
            eprintln!(
                "ssh refused: {} | sshd log tail: {}",
                String::from_utf8_lossy(&out.stderr).trim(),
                self.log_tail()
            );
        }
        ok
    }

    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("sshd.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(6)..].join(" / ")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("sshd.log")).unwrap_or_default()
    }
}

/// A user key pair made by `ssh-keygen`: (private key path, public key path).
pub fn user_key(dir: &Path, kind: &str) -> (PathBuf, PathBuf) {
    let key = dir.join(format!("id_{kind}_{}", uuid::Uuid::new_v4().simple()));
    let mut cmd = Command::new("ssh-keygen");
    cmd.args(["-q", "-N", "", "-C", "test@laptop", "-f"])
        .arg(&key);
    match kind.split_once(':') {
        Some((t, bits)) => cmd.args(["-t", t, "-b", bits]),
        None => cmd.args(["-t", kind]),
    };
    assert!(cmd.status().unwrap().success());
    let public = PathBuf::from(format!("{}.pub", key.display()));
    (key, public)
}
