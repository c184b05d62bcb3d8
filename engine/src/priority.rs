//! Lowering the CPU priority of query threads, so that on a busy machine the scheduler favours
//! the MQTT reactors and shard writers: a heavy query slows down instead of slowing ingest
//! (ClickHouse's `os_thread_priority` does the same for its query threads).
#![allow(unsafe_code)]

/// Sets the calling thread's nice value (0 = normal, 19 = lowest). On Linux, nice is per thread;
/// elsewhere this does nothing. Failure (e.g. a seccomp policy) is logged once per thread and
/// otherwise ignored: priority is a preference, not a promise.
pub fn lower_current_thread(nice: i32) {
    if nice <= 0 {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        // SAFETY: setpriority takes plain integers and touches no memory of ours; `who = 0`
        // with PRIO_PROCESS names the calling thread (Linux keeps nice per thread).
        let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice.min(19)) };
        if rc != 0 {
            tracing::debug!(
                error = %std::io::Error::last_os_error(),
                "could not lower a query thread's priority"
            );
        }
    }
}

/// The calling thread's nice value (Linux; 0 elsewhere).
pub fn current_nice() -> i32 {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: getpriority takes plain integers; errno is cleared first because -1 is also a
        // valid answer.
        unsafe {
            *libc::__errno_location() = 0;
            libc::getpriority(libc::PRIO_PROCESS, 0)
        }
    }
    #[cfg(not(target_os = "linux"))]
    0
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_thread_lowers_only_itself() {
        let before = super::current_nice();
        let inside = std::thread::spawn(|| {
            super::lower_current_thread(7);
            super::current_nice()
        })
        .join()
        .unwrap_or(-100);
        // Raising nice needs no privilege; a process already nicer than 7 stays as it is.
        if before <= 7 {
            assert_eq!(inside, 7);
        }
        assert_eq!(
            super::current_nice(),
            before,
            "other threads keep their priority"
        );
    }
}
