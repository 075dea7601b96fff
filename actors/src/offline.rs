//! What a front-end may do with the identity without a running core: create it (`init`), read its
//! public part (`whoami`, `export-key`), and check a passphrase before it starts a core. The one door
//! from a front-end to the identity file: the secret key never leaves the library through it, only
//! names, fingerprints and armored text the user asked for.

use std::path::Path;

pub use crate::crypto::fingerprint_groups;
use crate::identity;
pub use crate::identity::IdentityError;

/// Who the identity says we are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentitySummary {
    /// The user ID (the display name chosen at `init`).
    pub name: String,
    /// The primary key's fingerprint, uppercase hex.
    pub fingerprint: String,
}

/// Whether `data_dir` holds an identity.
pub fn exists(data_dir: &Path) -> bool {
    identity::exists(data_dir)
}

/// Generate and write a new identity (never overwrites one); `passphrase` None leaves the key
/// unprotected.
pub fn init(
    data_dir: &Path,
    name: &str,
    passphrase: Option<&str>,
) -> Result<IdentitySummary, IdentityError> {
    let key = identity::init(data_dir, name, passphrase)?;
    Ok(IdentitySummary {
        name: key.public().user_id(),
        fingerprint: key.fingerprint().to_string(),
    })
}

/// The identity's name and fingerprint, read without the passphrase.
pub fn whoami(data_dir: &Path) -> Result<IdentitySummary, IdentityError> {
    let cert = identity::public(data_dir)?;
    Ok(IdentitySummary {
        name: cert.user_id(),
        fingerprint: cert.fingerprint().to_string(),
    })
}

/// Whether starting a core needs a passphrase.
pub fn is_protected(data_dir: &Path) -> Result<bool, IdentityError> {
    identity::is_protected(data_dir)
}

/// Unlock the key once and forget it: a typo is reported now, not in a background core's log.
pub fn check_passphrase(data_dir: &Path, passphrase: &str) -> Result<(), IdentityError> {
    identity::load(data_dir, Some(passphrase)).map(drop)
}

/// The public key, armored.
pub fn export_public(data_dir: &Path) -> Result<String, IdentityError> {
    Ok(identity::public(data_dir)?.to_armored()?)
}

/// The secret key as stored (still passphrase-protected), armored.
pub fn export_secret(data_dir: &Path) -> Result<String, IdentityError> {
    identity::secret_armored(data_dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_facade_reads_what_init_wrote_without_the_passphrase() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!exists(dir.path()));
        let made = init(dir.path(), "alice", Some("pw")).unwrap();
        assert_eq!(made.name, "alice");
        assert_eq!(whoami(dir.path()).unwrap(), made);
        assert!(is_protected(dir.path()).unwrap());
        assert!(check_passphrase(dir.path(), "bad").is_err());
        check_passphrase(dir.path(), "pw").unwrap();
        assert!(export_public(dir.path())
            .unwrap()
            .starts_with("-----BEGIN PGP PUBLIC KEY BLOCK-----"));
        assert!(export_secret(dir.path())
            .unwrap()
            .starts_with("-----BEGIN PGP PRIVATE KEY BLOCK-----"));
    }
}
