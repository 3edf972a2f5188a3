//! Output files, written as one set, all or nothing.
//!
//! A set (say report.json and timeseries.csv, later plots and a page) either replaces
//! the previous set completely or leaves it exactly as it was, and leaves no temporary
//! file behind in either case. Every file is written to a hidden temporary name first
//! (`.NAME.PID-N.tmp`: unique to the process and the set, so two runs writing to the
//! same folder never truncate each other's temporaries);
//! only when all of them are on disk are they moved into place, each previous file
//! moved aside first so a failed move can be undone. A crash of the whole process in
//! the middle of the moves is the one case this cannot cover: hidden `.NAME.PID-N.tmp`
//! or `.NAME.PID-N.old` files may then remain.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The files `meshsim run` writes into its `--out` directory. A new output joins this
/// list, so that it is checked before the run and written with the others.
pub const RUN_OUTPUTS: &[&str] = &["report.json", "timeseries.csv", "report.html"];

/// The hidden sibling of `dir/name`: a name with folders (`plots/timeseries.svg`) keeps
/// its temporary beside it, in its own folder.
fn hidden(dir: &Path, name: &str, suffix: &str) -> PathBuf {
    let dest = dir.join(name);
    match (dest.parent(), dest.file_name()) {
        (Some(parent), Some(file)) => parent.join(format!(".{}.{suffix}", file.to_string_lossy())),
        _ => dir.join(format!(".{name}.{suffix}")),
    }
}

/// A tag no other set being written has: this process's id and a count of the sets it
/// has started. Every temporary of one set carries it.
fn unique_tag() -> String {
    static SETS: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        SETS.fetch_add(1, Ordering::Relaxed)
    )
}

/// Checks, before any work is done, that `write_all(dir, ..)` of files named `names`
/// can succeed: `dir` is a directory (or can be created: its nearest existing ancestor
/// is a writable directory), no name is taken by a directory, and a file can be
/// created there. Nothing is left on disk: a probe file is created and removed, and a
/// missing `dir` is not created.
pub fn check_writable(dir: &Path, names: &[&str]) -> io::Result<()> {
    let mut existing = dir;
    while !existing.as_os_str().is_empty() && !existing.exists() {
        existing = existing.parent().unwrap_or(Path::new(""));
    }
    let existing = if existing.as_os_str().is_empty() {
        Path::new(".")
    } else {
        existing
    };
    if !existing.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::NotADirectory,
            format!("{} is not a directory", existing.display()),
        ));
    }
    if existing == dir {
        for name in names {
            let dest = dir.join(name);
            if dest.is_dir() {
                return Err(io::Error::new(
                    io::ErrorKind::IsADirectory,
                    format!("{} is a directory", dest.display()),
                ));
            }
        }
    }
    let probe = hidden(existing, "meshsim-probe", &std::process::id().to_string());
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)?;
    std::fs::remove_file(&probe)
}

/// Writes `files` (name, contents) into `dir`, creating it if needed, all or nothing:
/// on success every file holds its new contents; on any failure every file that
/// existed holds its old contents, no new file or directory exists, and the error
/// names the file it is about.
pub fn write_all(dir: &Path, files: &[(&str, Vec<u8>)]) -> io::Result<()> {
    write_set(dir, files, &unique_tag(), None)
}

fn write_set(
    dir: &Path,
    files: &[(&str, Vec<u8>)],
    tag: &str,
    staged: Option<&Path>,
) -> io::Result<()> {
    let mut created = create_dirs(dir)?;
    // Folders inside the set (plots/), created the same way.
    for (name, _) in files {
        if let Some(parent) = dir.join(name).parent()
            && parent != dir
        {
            match create_dirs(parent) {
                Ok(mut more) => created.append(&mut more),
                Err(e) => {
                    for d in created.iter().rev() {
                        let _ = std::fs::remove_dir(d);
                    }
                    return Err(e);
                }
            }
        }
    }
    let result = stage(dir, files, tag, staged).and_then(|()| swap_in(dir, files, tag));
    if result.is_err() {
        for (name, _) in files {
            let _ = std::fs::remove_file(hidden(dir, name, &format!("{tag}.tmp")));
        }
        // Only directories this call created, deepest first, and only if empty.
        for d in created.iter().rev() {
            let _ = std::fs::remove_dir(d);
        }
    }
    result
}

/// A file of a set written before the others, while the run goes on (`timeseries.csv`
/// streamed): its temporary is created at once, in `dir` (created if missing).
/// `write_all_staged` moves it in with the rest of the set; dropped before that, it
/// removes its temporary and the folders it created, so a failed run leaves nothing.
pub struct Staged {
    tag: String,
    tmp: PathBuf,
    created: Vec<PathBuf>,
    done: bool,
}

impl Staged {
    /// The staged file, open for writing, and its guard.
    pub fn create(dir: &Path, name: &str) -> io::Result<(Staged, std::fs::File)> {
        let created = create_dirs(dir)?;
        let tag = unique_tag();
        let mut staged = Staged {
            tmp: hidden(dir, name, &format!("{tag}.tmp")),
            tag,
            created,
            done: false,
        };
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&staged.tmp)
        {
            Ok(file) => Ok((staged, file)),
            Err(e) => {
                let e = named(e, &staged.tmp);
                staged.tmp = PathBuf::new();
                Err(e)
            }
        }
    }

    /// A hidden sibling of the temporary, for a writer's scratch (removed by its owner).
    pub fn scratch(&self, suffix: &str) -> PathBuf {
        let mut s = self.tmp.clone().into_os_string();
        s.push(".");
        s.push(suffix);
        PathBuf::from(s)
    }

    /// The temporary, to read what was written before the set is moved in.
    pub fn path(&self) -> &Path {
        &self.tmp
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.tmp);
            for d in self.created.iter().rev() {
                let _ = std::fs::remove_dir(d);
            }
        }
    }
}

/// `write_all`, where the file `staged` stands for is already in its temporary (its
/// bytes in `files` are ignored): all or nothing, the staged file included.
pub fn write_all_staged(
    dir: &Path,
    files: &[(&str, Vec<u8>)],
    mut staged: Staged,
) -> io::Result<()> {
    let result = write_set(dir, files, &staged.tag, Some(&staged.tmp));
    staged.done = result.is_ok();
    result
}

/// Creates `dir` and its missing ancestors; returns the ones it created, outermost first.
fn create_dirs(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut missing = Vec::new();
    let mut d = dir;
    while !d.as_os_str().is_empty() && !d.exists() {
        missing.push(d.to_path_buf());
        d = d.parent().unwrap_or(Path::new(""));
    }
    missing.reverse();
    std::fs::create_dir_all(dir)
        .map_err(|e| named(e, dir))
        .map(|()| missing)
}

fn named(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// Writes every file to its temporary name. A destination that is a directory is
/// refused here, before anything is moved.
fn stage(
    dir: &Path,
    files: &[(&str, Vec<u8>)],
    tag: &str,
    staged: Option<&Path>,
) -> io::Result<()> {
    for (name, bytes) in files {
        let dest = dir.join(name);
        if dest.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::IsADirectory,
                format!("{} is a directory", dest.display()),
            ));
        }
        let tmp = hidden(dir, name, &format!("{tag}.tmp"));
        if staged == Some(tmp.as_path()) {
            continue;
        }
        std::fs::write(&tmp, bytes).map_err(|e| named(e, &tmp))?;
    }
    Ok(())
}

/// Moves each previous file aside and its new one into place; on a failure, undoes
/// the moves already made. On success the set aside files are removed.
fn swap_in(dir: &Path, files: &[(&str, Vec<u8>)], tag: &str) -> io::Result<()> {
    // (destination, where its previous version was moved, if it had one)
    let mut done: Vec<(PathBuf, Option<PathBuf>)> = Vec::new();
    let mut result = Ok(());
    for (name, _) in files {
        let dest = dir.join(name);
        let old = hidden(dir, name, &format!("{tag}.old"));
        // Only a file is moved aside: a directory in the way makes the move below fail.
        let had_old = dest.is_file();
        if had_old && let Err(e) = std::fs::rename(&dest, &old) {
            result = Err(named(e, &dest));
            break;
        }
        let moved_aside = had_old.then_some(old);
        if let Err(e) = std::fs::rename(hidden(dir, name, &format!("{tag}.tmp")), &dest) {
            if let Some(old) = &moved_aside {
                let _ = std::fs::rename(old, &dest);
            }
            result = Err(named(e, &dest));
            break;
        }
        done.push((dest, moved_aside));
    }
    match result {
        Ok(()) => {
            for (_, old) in done {
                if let Some(old) = old {
                    let _ = std::fs::remove_file(old);
                }
            }
            Ok(())
        }
        Err(e) => {
            for (dest, old) in done.into_iter().rev() {
                match old {
                    Some(old) => {
                        let _ = std::fs::rename(old, &dest);
                    }
                    None => {
                        let _ = std::fs::remove_file(&dest);
                    }
                }
            }
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(p: &Path) -> String {
        std::fs::read_to_string(p).unwrap()
    }

    /// Everything in `dir`, sorted, hidden files included.
    fn listing(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    fn scratch(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("meshsim-files-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn replaces_the_whole_set() {
        let d = scratch("ok");
        write_all(&d, &[("a", b"1".to_vec()), ("b", b"1".to_vec())]).unwrap();
        write_all(&d, &[("a", b"2".to_vec()), ("b", b"2".to_vec())]).unwrap();
        assert_eq!(
            (read(&d.join("a")), read(&d.join("b"))),
            ("2".into(), "2".into())
        );
        assert_eq!(listing(&d), ["a", "b"]);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_directory_in_the_way_leaves_the_previous_set_and_no_temporaries() {
        for blocked in ["a", "b", "c"] {
            let d = scratch(&format!("dir-{blocked}"));
            write_all(&d, &[("a", b"old".to_vec()), ("b", b"old".to_vec())]).unwrap();
            let _ = std::fs::remove_file(d.join(blocked));
            std::fs::create_dir(d.join(blocked)).unwrap();
            let err = write_all(
                &d,
                &[
                    ("a", b"new".to_vec()),
                    ("b", b"new".to_vec()),
                    ("c", b"new".to_vec()),
                ],
            )
            .unwrap_err();
            assert!(err.to_string().contains("is a directory"), "{err}");
            for f in ["a", "b"].iter().filter(|f| **f != blocked) {
                assert_eq!(read(&d.join(f)), "old", "{blocked}: {f}");
            }
            let mut want = vec!["a", "b"];
            if blocked == "c" {
                want.push("c");
            }
            assert_eq!(listing(&d), want, "{blocked}");
            std::fs::remove_dir_all(&d).unwrap();
        }
    }

    #[test]
    fn a_failed_rename_is_undone() {
        // The second destination's rename fails after the first one succeeded: a
        // non-empty directory cannot be replaced by a file, and it is created after
        // staging (between the check and the move), as a racing process would.
        let d = scratch("race");
        write_all(&d, &[("a", b"old".to_vec())]).unwrap();
        std::fs::write(hidden(&d, "a", "t.tmp"), b"new").unwrap();
        std::fs::write(hidden(&d, "b", "t.tmp"), b"new").unwrap();
        std::fs::create_dir_all(d.join("b").join("inside")).unwrap();
        let files = [("a", b"new".to_vec()), ("b", b"new".to_vec())];
        let err = swap_in(&d, &files, "t").unwrap_err();
        assert!(err.to_string().contains("b"), "{err}");
        assert_eq!(read(&d.join("a")), "old");
        assert!(!hidden(&d, "a", "t.old").exists());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn two_staged_files_in_one_folder_do_not_collide() {
        // Two runs to the same --out: each streams its own temporary, and the set
        // written last wins whole, leaving no temporary of either behind.
        use std::io::Write;
        let d = scratch("two-staged");
        let (first, mut f1) = Staged::create(&d, "t.csv").unwrap();
        let (second, mut f2) = Staged::create(&d, "t.csv").unwrap();
        assert_ne!(first.path(), second.path());
        f1.write_all(b"first").unwrap();
        f2.write_all(b"second").unwrap();
        drop((f1, f2));
        assert_eq!(read(first.path()), "first");
        assert_eq!(read(second.path()), "second");
        write_all_staged(&d, &[("t.csv", Vec::new()), ("r", b"1".to_vec())], first).unwrap();
        assert_eq!(read(&d.join("t.csv")), "first");
        write_all_staged(&d, &[("t.csv", Vec::new()), ("r", b"2".to_vec())], second).unwrap();
        assert_eq!(read(&d.join("t.csv")), "second");
        assert_eq!(listing(&d), ["r", "t.csv"]);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn names_with_folders_are_written_and_rolled_back_like_the_rest() {
        let d = scratch("sub");
        write_all(&d, &[("a", b"1".to_vec()), ("plots/p.svg", b"1".to_vec())]).unwrap();
        assert_eq!(read(&d.join("plots").join("p.svg")), "1");
        assert_eq!(listing(&d.join("plots")), ["p.svg"]);
        let err = write_all(
            &d,
            &[("plots/p.svg", b"2".to_vec()), ("q/bad\0", b"2".to_vec())],
        );
        assert!(err.is_err());
        assert_eq!(read(&d.join("plots").join("p.svg")), "1");
        assert_eq!(listing(&d), ["a", "plots"]);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_new_directory_is_removed_when_the_write_fails() {
        let d = scratch("newdir");
        let out = d.join("x").join("y");
        // A name with a NUL byte cannot be created on any platform we run on.
        assert!(write_all(&out, &[("bad\0name", b"1".to_vec())]).is_err());
        assert!(!d.join("x").exists());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn writability_is_checked_without_writing() {
        let d = scratch("check");
        check_writable(&d.join("new").join("deeper"), RUN_OUTPUTS).unwrap();
        assert!(!d.join("new").exists());
        std::fs::write(d.join("file"), b"x").unwrap();
        let err = check_writable(&d.join("file"), RUN_OUTPUTS).unwrap_err();
        assert!(err.to_string().contains("not a directory"), "{err}");
        let err = check_writable(&d.join("file").join("below"), RUN_OUTPUTS).unwrap_err();
        assert!(err.to_string().contains("not a directory"), "{err}");
        std::fs::create_dir(d.join("report.json")).unwrap();
        let err = check_writable(&d, RUN_OUTPUTS).unwrap_err();
        assert!(err.to_string().contains("is a directory"), "{err}");
        assert_eq!(listing(&d), ["file", "report.json"]);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
