//! The ledger's disk full, or its files read-only, for a while: a small file system of the
//! ledger's own that a test fills up and frees again, and `EROFS` put into the daemon's writes.
//!
//! How, and why this way: a `tmpfs` of a few megabytes mounted over `dir/ledger` in a user and
//! mount namespace of its own (`unshare --user --map-root-user --mount`). That needs no root on
//! the machine (unprivileged user namespaces suffice), no loop device and no other package than
//! util-linux, and whatever the test does cannot reach the machine's real disks. A holder
//! process (`sleep`) keeps the namespace, and so the file system, alive across daemon restarts;
//! the daemon and its CLI run inside it through `nsenter`, so the database, its `-wal` and `-shm`
//! files and the writer's lock file all live on that `tmpfs` ([`LedgerFs::assert_holds`] proves
//! it from the daemon's open descriptors). The test fills the file system from outside with one
//! file written through `/proc/<holder>/root/…` ([`LedgerFs::outside`]) and deletes it to end
//! the fault; `sqlite3` runs inside too ([`LedgerFs::inside`]), since SQLite resolves the
//! `/proc/<pid>/root` link to `/` and would open the empty directory outside.
//!
//! A read-only file system cannot be made the same way: Linux refuses `mount -o remount,ro`
//! (EBUSY) while any file on it is open for writing, which a running SQLite writer always has
//! (the database, its WAL, the lock file); only the kernel itself turns a file system read-only
//! under open files (after an I/O error), and that cannot be undone without unmounting it.
//! [`ReadOnly`] therefore puts the `EROFS` such a file system answers into the daemon's own
//! write calls on the ledger's files, with `strace --inject`, and takes it out again.
//!
//! If the namespace cannot be made (no `unshare`, user namespaces disabled) or `strace` cannot
//! attach, the test fails with the reason: the fault is never skipped.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

pub struct LedgerFs {
    holder: Child,
    /// The mount point, as the daemon sees it (the same path outside is an empty directory).
    pub mount: PathBuf,
    filler: PathBuf,
}

impl LedgerFs {
    /// Mounts a `tmpfs` of `size_kib` KiB over `dir/ledger` in a new user and mount namespace.
    pub fn mount(dir: &Path, size_kib: u64) -> LedgerFs {
        let mount = dir.join("ledger");
        std::fs::create_dir_all(&mount).unwrap();
        let mut holder = Command::new("unshare")
            .args([
                "--user",
                "--map-root-user",
                "--mount",
                "--propagation",
                "private",
            ])
            .args([
                "sh",
                "-c",
                "mount -t tmpfs -o size=\"$1k\",mode=0700 slawatch-ledger \"$2\" \
                 && echo mounted && exec sleep 100000",
                "sh",
            ])
            .arg(size_kib.to_string())
            .arg(&mount)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect(
                "`unshare` (util-linux) is required to give the ledger a file system of its own",
            );
        let mut line = String::new();
        let _ = BufReader::new(holder.stdout.take().unwrap()).read_line(&mut line);
        if line.trim() != "mounted" {
            let _ = holder.kill();
            let out = holder.wait_with_output().unwrap();
            panic!(
                "cannot mount a tmpfs for the ledger in a user+mount namespace (are unprivileged \
                 user namespaces enabled? sysctl kernel.unprivileged_userns_clone / \
                 user.max_user_namespaces): {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let fs = LedgerFs {
            filler: mount.join("filler"),
            holder,
            mount,
        };
        let df = fs.inside(&[
            "df",
            "--output=fstype,size",
            &fs.mount.display().to_string(),
        ]);
        assert!(
            df.status.success() && String::from_utf8_lossy(&df.stdout).contains("tmpfs"),
            "the ledger's tmpfs is not there: {}{}",
            String::from_utf8_lossy(&df.stdout),
            String::from_utf8_lossy(&df.stderr)
        );
        fs
    }

    /// The command prefix that runs a program inside the namespace (`nsenter` execs it in
    /// place: the child's pid is the program's).
    pub fn wrapper(&self) -> Vec<String> {
        vec![
            "nsenter".into(),
            "--target".into(),
            self.holder.id().to_string(),
            "--user".into(),
            "--mount".into(),
            "--".into(),
        ]
    }

    /// Runs `args` inside the namespace.
    pub fn inside(&self, args: &[&str]) -> Output {
        let w = self.wrapper();
        Command::new(&w[0])
            .args(&w[1..])
            .args(args)
            .output()
            .expect("`nsenter` (util-linux) is required")
    }

    /// A path inside the namespace as the test reaches it from outside.
    pub fn outside(&self, path: &Path) -> PathBuf {
        let mut p = PathBuf::from(format!("/proc/{}/root", self.holder.id()));
        p.push(path.strip_prefix("/").unwrap_or(path));
        p
    }

    /// Bytes free on the file system.
    pub fn available(&self) -> u64 {
        let out = self.inside(&[
            "df",
            "-B1",
            "--output=avail",
            &self.mount.display().to_string(),
        ]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or_else(|| panic!("df: {out:?}"))
    }

    /// Fills the file system to the last byte (one file, written until `ENOSPC`); returns the
    /// bytes it took.
    pub fn fill(&self) -> u64 {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.outside(&self.filler))
            .unwrap();
        let block = vec![0xa5u8; 64 * 1024];
        let mut written = 0u64;
        let mut chunk = block.len();
        while chunk > 0 {
            match f.write(&block[..chunk]) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(e) if e.raw_os_error() == Some(28) => chunk /= 2,
                Err(e) => panic!("filling the ledger's file system: {e}"),
            }
        }
        assert_eq!(self.available(), 0, "the ledger's file system is not full");
        written
    }

    /// Deletes the filler: the space is back.
    pub fn free(&self) {
        std::fs::remove_file(self.outside(&self.filler)).unwrap();
    }

    /// Asserts that process `pid` (in the namespace) holds the ledger database, its `-wal` and
    /// `-shm` files open on this file system: the mount id of each open descriptor against the
    /// `tmpfs` in the process's own mount table.
    pub fn assert_holds(&self, pid: u32, database: &Path) {
        let mountinfo = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
        let mount = self.mount.display().to_string();
        let id = mountinfo
            .lines()
            .rev()
            .find(|l| {
                let f: Vec<&str> = l.split(' ').collect();
                f.get(4) == Some(&mount.as_str()) && l.contains(" - tmpfs ")
            })
            .map(|l| l.split(' ').next().unwrap().to_string())
            .unwrap_or_else(|| panic!("process {pid} does not see the ledger's tmpfs"));
        let name = database.file_name().unwrap().to_string_lossy().into_owned();
        let mut held = Vec::new();
        for fd in std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .flatten()
        {
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let file = target.display().to_string();
            if !file.starts_with(&mount) || !file.contains(&name) {
                continue;
            }
            let info = std::fs::read_to_string(format!(
                "/proc/{pid}/fdinfo/{}",
                fd.file_name().to_string_lossy()
            ))
            .unwrap_or_default();
            let mnt = info
                .lines()
                .find_map(|l| l.strip_prefix("mnt_id:"))
                .map(|v| v.trim().to_string());
            assert_eq!(
                mnt.as_deref(),
                Some(id.as_str()),
                "{file} is not on the tmpfs"
            );
            held.push(file.rsplit('/').next().unwrap().to_string());
        }
        for suffix in ["", "-wal", "-shm", ".lock"] {
            let want = format!("{name}{suffix}");
            assert!(
                held.contains(&want),
                "{want} is not open on the ledger's file system: {held:?}"
            );
        }
    }
}

impl Drop for LedgerFs {
    /// The namespace, and the file system with it, goes with its last process.
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// The write calls SQLite makes on its files (data, WAL, truncation, syncs, preallocation).
const WRITE_CALLS: &str =
    "pwrite64,pwritev,pwritev2,write,writev,ftruncate,fallocate,fsync,fdatasync";

/// The ledger's files answering every write with `EROFS`, as a file system the kernel has turned
/// read-only under a running writer does: `strace --inject` attached to the daemon, limited to
/// the system calls on those files (`-P`), until [`ReadOnly::end`] detaches it. (The kernel
/// refuses to remount read-only while a file is open for writing, see the module doc, so the
/// error is put into the daemon's own system calls instead.) Opening and reading still work.
pub struct ReadOnly {
    strace: Child,
    log: PathBuf,
}

impl ReadOnly {
    /// Attaches to every thread of process `pid` (and those it starts) and returns once all
    /// its threads are traced.
    pub fn start(pid: u32, database: &Path, log: PathBuf) -> ReadOnly {
        let mut cmd = Command::new("strace");
        cmd.args(["-f", "-p", &pid.to_string(), "-o"])
            .arg(&log)
            .args(["-e", &format!("trace={WRITE_CALLS}")])
            .args(["-e", &format!("inject={WRITE_CALLS}:error=EROFS")]);
        for suffix in ["", "-wal", "-shm"] {
            let mut file = database.as_os_str().to_owned();
            file.push(suffix);
            cmd.arg("-P").arg(file);
        }
        let strace = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("`strace` is required to make the ledger read-only (apt-get install strace)");
        let ro = ReadOnly { strace, log };
        let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let traced = std::fs::read_dir(format!("/proc/{pid}/task"))
                .unwrap()
                .flatten()
                .all(|task| {
                    std::fs::read_to_string(task.path().join("status"))
                        .unwrap_or_default()
                        .lines()
                        .find_map(|l| l.strip_prefix("TracerPid:"))
                        .is_some_and(|t| t.trim() != "0")
                });
            if traced {
                return ro;
            }
            assert!(
                std::time::Instant::now() < until,
                "strace did not attach to process {pid} (ptrace not permitted? \
                 kernel.yama.ptrace_scope)"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Detaches (the daemon goes on, its files writable again); returns how many write calls
    /// were refused.
    pub fn end(mut self) -> usize {
        let status = Command::new("kill")
            .args(["-INT", &self.strace.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        self.strace.wait().unwrap();
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("EROFS") && l.contains("(INJECTED)"))
            .count()
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        let _ = self.strace.kill();
        let _ = self.strace.wait();
    }
}
