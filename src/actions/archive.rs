//! `archive`: a journal copy of a message as the gateway lets it through — inbound after
//! S/MIME decryption (the plaintext), outbound before S/MIME encryption and DKIM signing
//! (after the disclaimer and attachment signatures, which are part of what was sent).
//!
//! Two targets:
//! - an address: one more stored copy for that one recipient ([`journal_copy`]), committed
//!   with the message's other copies before the one `250` (`queue::admit`), delivered like
//!   any other copy (with the message's envelope sender, as Postfix's `always_bcc` does);
//! - a directory: a file `<queue id>.eml` ([`write_journal_file`]), mode 0600, the file and
//!   the directory fsync'd before the message is committed, so a `250` always has its
//!   journal file. The directory must exist and be writable by the gateway ([`check_dir`],
//!   at config validation).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use filters::Symbol;

use crate::queue::MessageCopy;

/// A journal copy to `address`: the message as it is at this step.
pub fn journal_copy(address: &str, message: &[u8]) -> MessageCopy {
    MessageCopy {
        recipients: Some(vec![address.to_string()]),
        body: Some(message.to_vec()),
        ..MessageCopy::default()
    }
}

/// A journal file to write once the message has its queue id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalFile {
    pub dir: PathBuf,
    /// The message as it is at the archive step (the stored copy's trace fields go above
    /// it when it is written).
    pub body: Vec<u8>,
}

pub fn archived_symbol(target: &str) -> Symbol {
    Symbol::new("ARCHIVED", target)
}

/// Write `message` as `dir/<id>.eml`, mode 0600: written to a temporary name, fsync'd,
/// renamed, and the directory fsync'd, so the file is whole and on disk when this returns.
/// Blocking: call it from the blocking pool.
pub fn write_journal_file(dir: &Path, id: &str, message: &[u8]) -> std::io::Result<PathBuf> {
    if !crate::queue::is_valid_id(id) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{id:?} is not a queue id"),
        ));
    }
    let path = dir.join(format!("{id}.eml"));
    let partial = dir.join(format!(".{id}.eml.partial"));
    let written = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&partial)?;
        file.write_all(message)?;
        file.sync_all()?;
        std::fs::rename(&partial, &path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&partial);
        return Err(std::io::Error::new(
            e.kind(),
            format!("archive file {}: {e}", path.display()),
        ));
    }
    Ok(path)
}

/// Whether the gateway can keep journal files in `dir`: it exists, is a directory, and a
/// file can be made in it (tried, then removed). The error says what to fix.
pub fn check_dir(dir: &Path) -> Result<(), String> {
    if !dir.is_absolute() {
        return Err(format!("{} must be an absolute path", dir.display()));
    }
    let meta = std::fs::metadata(dir)
        .map_err(|e| format!("{}: {e} (create the directory first)", dir.display()))?;
    if !meta.is_dir() {
        return Err(format!("{} is not a directory", dir.display()));
    }
    let probe = dir.join(format!(".portcullis-write-check-{}", std::process::id()));
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&probe)
    {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => Err(format!(
            "{} is not writable by the gateway's user: {e}",
            dir.display()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_journal_file_is_whole_private_and_named_by_the_queue_id() {
        let dir = tempfile::tempdir().unwrap();
        let message = b"From: a@example.test\r\n\r\nhello\r\n";
        let path = write_journal_file(dir.path(), "18A2B3C4D5E6F0001", message).unwrap();
        assert_eq!(path, dir.path().join("18A2B3C4D5E6F0001.eml"));
        assert_eq!(std::fs::read(&path).unwrap(), message);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // nothing else is left in the directory
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        // an id is never a path
        assert!(write_journal_file(dir.path(), "../x", message).is_err());
        // a missing directory is an error, not a panic
        let gone = dir.path().join("gone");
        let e = write_journal_file(&gone, "18A2B3C4D5E6F0002", message).unwrap_err();
        assert!(e.to_string().contains("archive file"), "{e}");
    }

    #[test]
    fn the_directory_is_checked_at_validation() {
        let dir = tempfile::tempdir().unwrap();
        assert!(check_dir(dir.path()).is_ok());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let e = check_dir(&dir.path().join("missing")).unwrap_err();
        assert!(e.contains("create the directory"), "{e}");
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        assert!(check_dir(&file).unwrap_err().contains("not a directory"));
        assert!(
            check_dir(Path::new("relative"))
                .unwrap_err()
                .contains("absolute")
        );
    }

    #[test]
    fn a_journal_copy_goes_to_the_archive_address_only() {
        let copy = journal_copy("archive@example.test", b"m");
        assert_eq!(copy.recipients.unwrap(), ["archive@example.test"]);
        assert_eq!(copy.body.unwrap(), b"m");
        assert!(copy.hold.is_none());
    }
}
