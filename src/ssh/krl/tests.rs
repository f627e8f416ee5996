//! The KRL writer checked against OpenSSH itself: `ssh-keygen -Q` must agree with what we meant.

use std::path::{Path, PathBuf};
use std::process::Command;

use ssh_key::certificate::{Builder, CertType};
use ssh_key::rand_core::OsRng;
use ssh_key::{Algorithm, PrivateKey};

use super::*;

struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tmp() -> Dir {
    let d = std::env::temp_dir().join(format!("elevate-krl-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&d).unwrap();
    Dir(d)
}

fn ca() -> PrivateKey {
    PrivateKey::random(&mut OsRng, Algorithm::Ed25519).unwrap()
}

/// Writes a certificate for a fresh key, signed by `ca`, and returns its path.
fn cert(dir: &Path, ca: &PrivateKey, serial: u64, key_id: &str) -> PathBuf {
    let user = PrivateKey::random(&mut OsRng, Algorithm::Ed25519).unwrap();
    let mut b = Builder::new_with_random_nonce(
        &mut OsRng,
        user.public_key().key_data().clone(),
        1_700_000_000,
        4_000_000_000,
    )
    .unwrap();
    b.serial(serial).unwrap();
    b.cert_type(CertType::User).unwrap();
    b.key_id(key_id).unwrap();
    b.valid_principal("deploy").unwrap();
    let c = b.sign(ca).unwrap();
    let path = dir.join(format!("{serial}-{}-cert.pub", uuid::Uuid::new_v4()));
    std::fs::write(&path, c.to_openssh().unwrap()).unwrap();
    path
}

/// `ssh-keygen -Q`: true when OpenSSH says the certificate is revoked.
fn revoked(krl: &Path, cert: &Path) -> bool {
    let out = Command::new("ssh-keygen")
        .arg("-Q")
        .arg("-f")
        .arg(krl)
        .arg(cert)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    match out.status.code() {
        Some(0) => {
            assert!(text.contains(": ok"), "{text}");
            false
        }
        Some(1) => {
            assert!(text.contains("REVOKED"), "{text}");
            true
        }
        other => panic!(
            "ssh-keygen -Q failed ({other:?}): {text} {}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

fn write(dir: &Path, bytes: &[u8]) -> PathBuf {
    let p = dir.join(format!("{}.krl", uuid::Uuid::new_v4()));
    std::fs::write(&p, bytes).unwrap();
    p
}

const HEADER: KrlHeader<'static> = KrlHeader {
    version: 7,
    generated_at: 1_800_000_000,
    comment: "elevate test",
};

#[test]
fn ssh_keygen_agrees_on_serials_key_ids_and_cas() {
    let d = tmp();
    let (ca1, ca2) = (ca(), ca());
    let c5 = cert(&d.0, &ca1, 5, "elevate:t:a@x:1");
    let c6 = cert(&d.0, &ca1, 6, "elevate:t:a@x:2");
    let c7 = cert(&d.0, &ca1, 7, "elevate:t:a@x:3");
    let other_ca_5 = cert(&d.0, &ca2, 5, "elevate:t:a@x:9");
    let big = cert(&d.0, &ca1, u64::MAX >> 1, "elevate:t:a@x:4");
    let krl = encode(
        HEADER,
        &[
            RevokedUnderCa {
                ca: ca1.public_key().clone(),
                serials: vec![7, 5, 5, u64::MAX >> 1],
                key_ids: vec!["elevate:t:a@x:2".into()],
            },
            RevokedUnderCa {
                ca: ca2.public_key().clone(),
                serials: vec![],
                key_ids: vec![],
            },
        ],
    )
    .unwrap();
    assert!(looks_valid(&krl));
    let f = write(&d.0, &krl);
    assert!(revoked(&f, &c5));
    assert!(revoked(&f, &c6), "by key id");
    assert!(revoked(&f, &c7));
    assert!(revoked(&f, &big));
    assert!(
        !revoked(&f, &other_ca_5),
        "serial 5 of another CA stays valid"
    );
}

#[test]
fn an_empty_krl_is_valid_and_revokes_nothing() {
    let d = tmp();
    let ca = ca();
    let c = cert(&d.0, &ca, 1, "x");
    let krl = encode(HEADER, &[]).unwrap();
    assert!(looks_valid(&krl));
    assert!(!revoked(&write(&d.0, &krl), &c));
}

#[test]
fn serial_zero_is_refused_and_garbage_is_not_a_krl() {
    let err = encode(
        HEADER,
        &[RevokedUnderCa {
            ca: ca().public_key().clone(),
            serials: vec![0],
            key_ids: vec![],
        }],
    )
    .unwrap_err();
    assert_eq!(err, KrlError::ZeroSerial);
    assert!(!looks_valid(b"<html>502 Bad Gateway</html>"));
    assert!(!looks_valid(b"SSHKRL\n\0"));
}
