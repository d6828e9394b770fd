//! Reading svlogd log directories as they are written: the last lines of `current` and the rotated files before it, and following them across rotations.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::PathBuf;

use super::files;
use crate::util::file::with_path;

/// One service's log as `logs` reads it: the file it is reading and how far, and the newest
/// rotated file already accounted for.
pub struct Log {
    prefix: Vec<u8>,
    dir: PathBuf,
    file: Option<File>,
    offset: u64,
    /// A line whose newline has not been read yet (it may continue in the next file).
    partial: Vec<u8>,
    /// Rotated files up to this name have been shown, or predate what was shown.
    after: Option<String>,
}

/// Identifies a file across renames.
fn identity(f: &File) -> io::Result<(u64, u64)> {
    let m = f.metadata()?;
    Ok((m.dev(), m.ino()))
}

impl Log {
    pub fn new(prefix: Vec<u8>, dir: PathBuf) -> Log {
        Log {
            prefix,
            dir,
            file: None,
            offset: 0,
            partial: Vec::new(),
            after: None,
        }
    }

    fn rotated(&self) -> io::Result<Vec<String>> {
        match super::rotated_names(&self.dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            r => r.map_err(|e| with_path(e, &self.dir)),
        }
    }

    /// Prints the last `n` complete lines of the log, reaching back into rotated files when
    /// `current` has fewer, and remembers where it stopped for following.
    pub fn print_tail(&mut self, n: usize, out: &mut impl Write) -> io::Result<()> {
        // current first: a rotation after this shows up among the rotated files, by identity.
        let current = super::current_file(&self.dir);
        self.file = files::open_read(&current).ok();
        let ours = self.file.as_ref().map(identity).transpose()?;
        let names = self.rotated()?;
        self.after = names.last().cloned();
        let mut newest_first: Vec<(File, u64)> = Vec::new();
        if let Some(f) = &self.file {
            self.offset = f.metadata()?.len();
            newest_first.push((f.try_clone()?, self.offset));
        }
        let mut older = names.iter().rev();
        let mut blocks: Vec<Vec<u8>> = Vec::new();
        let mut newlines = 0;
        // One newline more than n marks where the first of the n lines starts.
        while newlines <= n {
            let (file, mut end) = match newest_first.pop() {
                Some(next) => next,
                None => {
                    let Some(name) = older.next() else { break };
                    let path = self.dir.join(name);
                    match files::open_read(&path) {
                        Ok(f) if Some(identity(&f)?) != ours => {
                            let len = f.metadata()?.len();
                            (f, len)
                        }
                        Ok(_) => continue,
                        // Deleted by a rotation since it was listed.
                        Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                        Err(e) => return Err(with_path(e, &path)),
                    }
                }
            };
            while end > 0 && newlines <= n {
                let start = end.saturating_sub(64 * 1024);
                let mut block = vec![0; (end - start) as usize];
                file.read_exact_at(&mut block, start)?;
                newlines += memchr::memchr_iter(b'\n', &block).count();
                blocks.push(block);
                end = start;
            }
        }
        let stream: Vec<u8> = blocks.into_iter().rev().flatten().collect();
        let whole = memchr::memrchr(b'\n', &stream).map_or(0, |i| i + 1);
        let lines: Vec<&[u8]> = stream[..whole].split_inclusive(|&b| b == b'\n').collect();
        for line in &lines[lines.len().saturating_sub(n)..] {
            out.write_all(&self.prefix)?;
            out.write_all(line)?;
        }
        self.partial = stream[whole..].to_vec();
        Ok(())
    }

    /// Prints the lines completed since the last call, going through any files rotated
    /// meanwhile, in order. A `current` that shrank was truncated by someone: read it again
    /// from the start.
    pub fn print_new(&mut self, out: &mut impl Write) -> io::Result<()> {
        self.read_on(out)?;
        let Ok(now) = std::fs::metadata(super::current_file(&self.dir)) else {
            // Between a rotation's rename and the new current, or no directory yet.
            return Ok(());
        };
        match &self.file {
            Some(f) if identity(f)? == (now.dev(), now.ino()) => {
                if now.len() < self.offset {
                    self.offset = 0;
                    self.partial.clear();
                    self.read_on(out)?;
                }
                Ok(())
            }
            _ => self.catch_up(out),
        }
    }

    /// The file being read is no longer `current`: finish it, show the files rotated after
    /// it, then start on the new `current`, checking that it was not itself rotated meanwhile.
    fn catch_up(&mut self, out: &mut impl Write) -> io::Result<()> {
        // svlogd closes current before renaming it, so this reads all of it.
        self.read_on(out)?;
        let done = self.file.take().as_ref().map(identity).transpose()?;
        let newer = |log: &Log| -> io::Result<Vec<String>> {
            let mut names = log.rotated()?;
            names.retain(|n| log.after.as_ref().is_none_or(|a| n > a));
            Ok(names)
        };
        loop {
            for name in newer(self)? {
                if let Ok(f) = files::open_read(&self.dir.join(&name)) {
                    if Some(identity(&f)?) != done {
                        self.file = Some(f);
                        self.offset = 0;
                        self.read_on(out)?;
                    }
                }
                self.after = Some(name);
            }
            let Ok(f) = files::open_read(&super::current_file(&self.dir)) else {
                self.file = None;
                return Ok(());
            };
            if newer(self)?.is_empty() {
                self.file = Some(f);
                self.offset = 0;
                return self.read_on(out);
            }
        }
    }

    fn read_on(&mut self, out: &mut impl Write) -> io::Result<()> {
        let Some(f) = &mut self.file else {
            return Ok(());
        };
        f.seek(SeekFrom::Start(self.offset))?;
        let mut buf = Vec::new();
        self.offset += f.read_to_end(&mut buf)? as u64;
        if buf.is_empty() {
            return Ok(());
        }
        self.partial.extend_from_slice(&buf);
        let whole = memchr::memrchr(b'\n', &self.partial).map_or(0, |i| i + 1);
        if self.prefix.is_empty() {
            out.write_all(&self.partial[..whole])?;
        } else {
            for line in self.partial[..whole].split_inclusive(|&b| b == b'\n') {
                out.write_all(&self.prefix)?;
                out.write_all(line)?;
            }
        }
        self.partial.drain(..whole);
        Ok(())
    }
}
