//! Giving the system back the heap memory the allocator keeps after the program freed it.
//!
//! glibc's malloc returns freed memory to the system only from the top of each arena; what is
//! freed below a live allocation stays resident. So an agent keeps the high-water mark of its
//! last burst (a catch-up, a poll of 500 organizations at once) for as long as it idles:
//! measured at 500 sources, 50.0 MiB resident of which 18 MiB freed memory
//! (BENCHMARKS.md "sources"). `malloc_trim(0)` walks every arena and gives back each free page
//! (`madvise`), live allocations untouched.
//!
//! This is the crate's one `unsafe` block: the C call itself, which takes no pointer and has no
//! precondition. The crate's lint is `deny(unsafe_code)`, allowed here alone.

/// Asks the allocator to give the system back the free pages of every arena. Costs a walk of
/// the heap with each arena locked in turn, and a page fault per page given back when it is
/// used again: call it when the agent has gone quiet, and not often (the queue's writer: after
/// a quiet second, at most once in 30 s). True when glibc gave something back. Elsewhere
/// (musl, other systems) it does nothing: their allocators have no such call.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn release_freed() -> bool {
    // SAFETY: `malloc_trim` takes no pointer and has no precondition on its caller; glibc
    // serializes it with every other allocator call by the arenas' own locks.
    unsafe { libc::malloc_trim(0) == 1 }
}

/// No such call outside glibc: nothing is done.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn release_freed() -> bool {
    false
}

#[cfg(test)]
mod tests {
    /// Set in the child process that measures (a process of its own: the other tests' threads
    /// allocate and free too, and the measure is the whole process's).
    const CHILD: &str = "AUDITRELAY_TEST_MEMORY_CHILD";

    /// Memory freed below a live allocation is given back: the process's resident anonymous
    /// memory falls by most of what was freed (`/proc/self/smaps_rollup`). Run in a child
    /// process of this test binary with this test alone.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn test_freed_memory_below_a_live_allocation_is_given_back() {
        if std::env::var_os(CHILD).is_none() {
            let name = "memory::tests::test_freed_memory_below_a_live_allocation_is_given_back";
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--exact", name, "--nocapture", "--test-threads=1"])
                .env(CHILD, "1")
                .output()
                .unwrap();
            let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            assert!(out.status.success() && text.contains("1 passed"), "the measuring process failed:\n{text}");
            return;
        }
        fn anonymous_kib() -> u64 {
            let text = std::fs::read_to_string("/proc/self/smaps_rollup").unwrap();
            let line = text.lines().find(|l| l.starts_with("Anonymous:")).unwrap();
            line.split_whitespace().nth(1).unwrap().parse().unwrap()
        }
        // 64 MiB in 16 KiB blocks (below glibc's mmap threshold: from the arena), touched,
        // then every block freed but the last, which keeps the arena's top in use.
        let mut blocks: Vec<Vec<u8>> = (0..4096u32).map(|i| vec![(i % 251) as u8 + 1; 16 * 1024]).collect();
        let last = blocks.pop();
        drop(blocks);
        let before = anonymous_kib();
        assert!(super::release_freed(), "glibc gave nothing back");
        let after = anonymous_kib();
        println!("anonymous memory: {before} KiB before, {after} KiB after");
        assert!(
            before.saturating_sub(after) >= 32 * 1024,
            "anonymous memory {before} KiB before, {after} KiB after: less than half of the 64 MiB freed came back"
        );
        drop(last);
    }
}
