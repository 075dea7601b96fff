//! The identity key on disk: `<data_dir>/identity.pgp`, binary OpenPGP, protected with the user's
//! passphrase (OpenPGP S2K) unless they chose none. Written once by `init` (never overwritten), read and
//! unlocked once when the core starts.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::crypto::{CryptoError, SecretCert};

#[derive(Debug, Error)]
pub enum IdentityError {
    #[error("an identity already exists at {0}; refusing to overwrite it")]
    Exists(PathBuf),
    /// The binary adds the `init` command to run, with the user's own options.
    #[error("no identity at {0}")]
    Missing(PathBuf),
    #[error("{0}")]
    Crypto(#[from] CryptoError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("display name must be 1 to 64 printable characters")]
    BadName,
}

impl IdentityError {
    /// Whether the passphrase given was wrong (the binary exits with its "refused" status).
    pub fn is_wrong_passphrase(&self) -> bool {
        matches!(self, IdentityError::Crypto(CryptoError::WrongPassphrase))
    }
}

pub fn identity_path(data_dir: &Path) -> PathBuf {
    data_dir.join("identity.pgp")
}

/// Create the data directory, readable by the owner only.
pub fn ensure_data_dir(data_dir: &Path) -> Result<(), IdentityError> {
    let io = |source| IdentityError::Io {
        path: data_dir.to_path_buf(),
        source,
    };
    fs::create_dir_all(data_dir).map_err(io)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(data_dir, fs::Permissions::from_mode(0o700)).map_err(io)?;
    }
    Ok(())
}

/// Generate and write a new identity. Fails if one exists.
pub fn init(
    data_dir: &Path,
    name: &str,
    passphrase: Option<&str>,
) -> Result<SecretCert, IdentityError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
        return Err(IdentityError::BadName);
    }
    ensure_data_dir(data_dir)?;
    let path = identity_path(data_dir);
    let key = SecretCert::generate(name)?;
    let bytes = key.to_protected_bytes(passphrase)?;
    let io = |source| IdentityError::Io {
        path: path.clone(),
        source,
    };
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            IdentityError::Exists(path.clone())
        } else {
            io(e)
        }
    })?;
    f.write_all(&bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    Ok(key)
}

pub fn exists(data_dir: &Path) -> bool {
    identity_path(data_dir).is_file()
}

/// Whether the stored identity needs a passphrase.
pub fn is_protected(data_dir: &Path) -> Result<bool, IdentityError> {
    match load(data_dir, None) {
        Ok(_) => Ok(false),
        Err(IdentityError::Crypto(CryptoError::PassphraseNeeded)) => Ok(true),
        Err(e) => Err(e),
    }
}

fn read(data_dir: &Path) -> Result<Vec<u8>, IdentityError> {
    let path = identity_path(data_dir);
    fs::read(&path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            IdentityError::Missing(path.clone())
        } else {
            IdentityError::Io {
                path: path.clone(),
                source: e,
            }
        }
    })
}

/// The public certificate, read without the passphrase.
pub fn public(data_dir: &Path) -> Result<crate::crypto::PublicCert, IdentityError> {
    Ok(crate::crypto::public_of_secret(&read(data_dir)?)?)
}

/// The secret key as stored (still passphrase-protected), armored.
pub fn secret_armored(data_dir: &Path) -> Result<String, IdentityError> {
    Ok(crate::crypto::armor_secret(&read(data_dir)?)?)
}

/// Read and unlock the identity.
pub fn load(data_dir: &Path, passphrase: Option<&str>) -> Result<SecretCert, IdentityError> {
    Ok(SecretCert::unlock(&read(data_dir)?, passphrase)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_never_overwrites_and_load_checks_passphrase() {
        let dir = tempfile::tempdir().unwrap();
        let k = init(dir.path(), "alice", Some("pw")).unwrap();
        assert!(matches!(
            init(dir.path(), "alice", None),
            Err(IdentityError::Exists(_))
        ));
        assert!(is_protected(dir.path()).unwrap());
        assert!(matches!(
            load(dir.path(), Some("bad")),
            Err(IdentityError::Crypto(CryptoError::WrongPassphrase))
        ));
        assert_eq!(
            load(dir.path(), Some("pw")).unwrap().fingerprint(),
            k.fingerprint()
        );
        assert!(matches!(
            init(dir.path(), " ", None),
            Err(IdentityError::BadName)
        ));
    }
}
