//! Keeping freed memory for the next step instead of handing it back to the OS.
//!
//! Every op of a training step allocates its output afresh (candle owns and frees tensor
//! storage), and glibc's defaults return large freed blocks to the kernel: with `mmap`
//! for blocks above 128 KiB and heap trimming above 128 KiB free. The next step then
//! page-faults every page of every activation in again and the kernel zeroes it — 17,000
//! faults and a tenth of the CPU time per ResNet-50 step at 16×64 (measured with
//! `perf stat`). Serving blocks up to 32 MiB (glibc's maximum) from the heap and never
//! trimming it lets the same memory serve every step; peak memory is unchanged because
//! a step frees what it allocated.

/// Tells glibc's allocator to keep freed memory in the process (see the module docs).
///
/// Process-wide, so it is the binary's choice: `cargo xtask` and the `vct` binary call it
/// at start. Returns whether the setting took (false on other allocators and systems,
/// where it does nothing).
pub fn keep_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only changes allocator tunables; it is called before the
        // process has threads that allocate concurrently with it in our binaries, and
        // glibc serialises it with its own arena locks regardless.
        unsafe {
            let mmap = libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
            let trim = libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
            mmap == 1 && trim == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn glibc_takes_the_setting() {
        let took = super::keep_freed_memory();
        assert_eq!(took, cfg!(all(target_os = "linux", target_env = "gnu")));
    }
}
