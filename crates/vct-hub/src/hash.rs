//! Hashes of files on disk: sha256 (LFS files, URL checksums) and git's blob
//! sha1 (the Hub's etag of small, non-LFS files).

use std::io::Read;
use std::path::Path;

use sha1::Digest as _;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn stream(path: &Path, mut update: impl FnMut(&[u8])) -> std::io::Result<u64> {
    let mut f = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf)?;
        if k == 0 {
            return Ok(n);
        }
        update(&buf[..k]);
        n += k as u64;
    }
}

/// The sha256 of a file's bytes, lowercase hex, and its size.
pub fn sha256_file(path: &Path) -> std::io::Result<(String, u64)> {
    let mut h = sha2::Sha256::new();
    let n = stream(path, |b| h.update(b))?;
    Ok((hex(&h.finalize()), n))
}

/// The sha256 of bytes in memory, lowercase hex.
pub fn sha256_bytes(bytes: &[u8]) -> String {
    hex(&sha2::Sha256::digest(bytes))
}

/// Git's blob id of a file: sha1 of `blob <len>\0` + the bytes (what the Hub
/// sends as the etag of files not stored with LFS).
pub fn git_blob_sha1_file(path: &Path) -> std::io::Result<String> {
    let len = std::fs::metadata(path)?.len();
    let mut h = sha1::Sha1::new();
    h.update(format!("blob {len}\0").as_bytes());
    stream(path, |b| h.update(b))?;
    Ok(hex(&h.finalize()))
}

/// Git's blob id of bytes in memory.
pub fn git_blob_sha1_bytes(bytes: &[u8]) -> String {
    let mut h = sha1::Sha1::new();
    h.update(format!("blob {}\0", bytes.len()).as_bytes());
    h.update(bytes);
    hex(&h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_hashes() {
        // `printf 'hello\n' | sha256sum` and `| git hash-object --stdin`.
        assert_eq!(
            sha256_bytes(b"hello\n"),
            "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"
        );
        assert_eq!(
            git_blob_sha1_bytes(b"hello\n"),
            "ce013625030ba8dba906f756967f9e9ca394464a"
        );
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"hello\n").unwrap();
        assert_eq!(sha256_file(&p).unwrap(), (sha256_bytes(b"hello\n"), 6));
        assert_eq!(
            git_blob_sha1_file(&p).unwrap(),
            git_blob_sha1_bytes(b"hello\n")
        );
    }
}
