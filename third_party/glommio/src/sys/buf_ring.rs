// NextDB patch (PATCHES.md): socket receives armed once per connection.
//
// A provided-buffer ring (`IORING_REGISTER_PBUF_RING`, Linux 5.19) registered with the
// main ring, and the state of one multishot receive (`IORING_RECV_MULTISHOT`, Linux
// 6.0) that draws from it. The kernel copies each arriving segment of a socket into a
// buffer it takes from the ring and posts one completion naming the buffer; the
// receive stays armed, so a connection costs no submission and no `recv` system call
// per request. Everything here belongs to one executor thread (one ring).
use std::{
    cell::Cell,
    collections::VecDeque,
    fmt, io,
    os::unix::io::RawFd,
    rc::Rc,
    sync::atomic::{AtomicU16, Ordering},
};

/// Buffers in the ring (a power of two, at most 32768). The kernel takes them in ring
/// order, so every buffer is touched once per lap: few enough that the laps stay in
/// the caches. A connection holds a buffer only until its task reads it; when all are
/// held, receives fall back to `recv` (see `net/stream.rs`).
const ENTRIES: u16 = 256;
/// Bytes per buffer; a segment larger than this spans several completions.
pub(crate) const BUF_BYTES: usize = 4096;
/// Distance between buffers: one cache line more than a page, so the first lines of
/// consecutive buffers (the only ones a small request touches) fall in different cache
/// sets instead of all aliasing to the same few.
const BUF_STRIDE: usize = BUF_BYTES + 64;
/// The group id the receives select from (one group per ring).
pub(crate) const GROUP: u16 = 1;

/// Received bytes one connection may hold in the ring before its receive is
/// cancelled: a connection whose reader stopped (the application's backpressure) must
/// leave the other connections their buffers and its peer a closed TCP window. The
/// next read re-arms.
const MAX_QUEUED_BYTES: usize = 16 * BUF_BYTES;

/// `IORING_CQE_F_BUFFER`: the completion names a buffer in its upper 16 flag bits.
pub(crate) const CQE_F_BUFFER: u32 = 1 << 0;
/// `IORING_CQE_F_MORE`: the request stays armed; more completions follow.
pub(crate) const CQE_F_MORE: u32 = 1 << 1;
const CQE_BUFFER_SHIFT: u32 = 16;
/// `IORING_RECV_MULTISHOT`, set in the SQE's `ioprio`.
pub(crate) const RECV_MULTISHOT: u16 = 1 << 1;
const REGISTER_PBUF_RING: libc::c_uint = 22;

/// `struct io_uring_buf`. Entry 0's `resv` is the ring's tail: never written here.
#[repr(C)]
struct RingEntry {
    addr: u64,
    len: u32,
    bid: u16,
    resv: u16,
}

/// `struct io_uring_buf_reg`.
#[repr(C)]
struct BufReg {
    ring_addr: u64,
    ring_entries: u32,
    bgid: u16,
    flags: u16,
    resv: [u64; 3],
}

/// The ring and its buffers. The kernel reads entries between our tail and its head,
/// and writes into a buffer only after taking it; a buffer comes back to the ring when
/// the connection that received into it has consumed it (or is gone).
pub(crate) struct BufRing {
    ring: *mut RingEntry,
    bufs: *mut u8,
    tail: Cell<u16>,
}

fn map_anonymous(bytes: usize) -> io::Result<*mut u8> {
    // SAFETY: a fresh private anonymous mapping; no existing memory is touched.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            bytes,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    Ok(p as *mut u8)
}

impl BufRing {
    /// Maps and registers a ring with `ring_fd`; `None` when the kernel lacks buffer
    /// rings or `GLOMMIO_RECV_MULTISHOT=0` turns the mode off: sockets then use
    /// readiness polls (PATCHES.md).
    pub(crate) fn register(ring_fd: RawFd) -> Option<Rc<BufRing>> {
        if std::env::var_os("GLOMMIO_RECV_MULTISHOT").is_some_and(|v| v == "0") {
            return None;
        }
        let ring_bytes = ENTRIES as usize * std::mem::size_of::<RingEntry>();
        let ring = map_anonymous(ring_bytes).ok()? as *mut RingEntry;
        let bufs = match map_anonymous(ENTRIES as usize * BUF_STRIDE) {
            Ok(b) => {
                // Huge pages where the kernel has them: one TLB entry for all buffers.
                // SAFETY: advice on the mapping just made; failure changes nothing.
                unsafe {
                    libc::madvise(
                        b as *mut libc::c_void,
                        ENTRIES as usize * BUF_STRIDE,
                        libc::MADV_HUGEPAGE,
                    )
                };
                b
            }
            Err(_) => {
                // SAFETY: unmapping the mapping made just above, used by nobody.
                unsafe { libc::munmap(ring as *mut libc::c_void, ring_bytes) };
                return None;
            }
        };
        let reg = BufReg {
            ring_addr: ring as u64,
            ring_entries: ENTRIES as u32,
            bgid: GROUP,
            flags: 0,
            resv: [0; 3],
        };
        // SAFETY: `reg` describes the mapping above, which stays mapped for the life
        // of the process (see `Drop`), so the kernel never reads freed memory.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_io_uring_register,
                ring_fd,
                REGISTER_PBUF_RING,
                &reg as *const BufReg,
                1,
            )
        };
        if rc != 0 {
            // SAFETY: the kernel refused the ring, so nothing references the mappings.
            unsafe {
                libc::munmap(ring as *mut libc::c_void, ring_bytes);
                libc::munmap(bufs as *mut libc::c_void, ENTRIES as usize * BUF_STRIDE);
            }
            return None;
        }
        let ring = Rc::new(BufRing {
            ring,
            bufs,
            tail: Cell::new(0),
        });
        for bid in 0..ENTRIES {
            ring.push(bid);
        }
        ring.publish();
        Some(ring)
    }

    fn push(&self, bid: u16) {
        assert!(bid < ENTRIES, "buffer id {bid} out of range");
        let t = self.tail.get();
        // SAFETY: the index is masked into the ring; the kernel does not read an entry
        // at or past the published tail, and `resv` (the tail of entry 0) is not written.
        unsafe {
            let e = self.ring.add((t & (ENTRIES - 1)) as usize);
            (*e).addr = self.bufs.add(bid as usize * BUF_STRIDE) as u64;
            (*e).len = BUF_BYTES as u32;
            (*e).bid = bid;
        }
        self.tail.set(t.wrapping_add(1));
    }

    /// Makes pushed entries visible to the kernel (a release store of the tail).
    fn publish(&self) {
        // SAFETY: the tail is the 16-bit field at byte 14 of the ring, naturally
        // aligned; the kernel reads it with acquire semantics.
        let tail = unsafe { &*((self.ring as *mut u8).add(14) as *const AtomicU16) };
        tail.store(self.tail.get(), Ordering::Release);
    }

    /// Gives buffer `bid` back to the kernel.
    pub(crate) fn recycle(&self, bid: u16) {
        self.push(bid);
        self.publish();
    }

    fn bytes(&self, bid: u16, from: usize, to: usize) -> &[u8] {
        assert!(bid < ENTRIES && from <= to && to <= BUF_BYTES);
        // SAFETY: in bounds (asserted); the kernel is done with a buffer once it has
        // posted its completion, and it is not recycled while we hold it.
        unsafe { std::slice::from_raw_parts(self.bufs.add(bid as usize * BUF_STRIDE + from), to - from) }
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // The mappings are left in place: the kernel may still reference the ring
        // until the io_uring instance is torn down, which happens asynchronously after
        // its file is closed. One ring per executor thread, made once.
    }
}

/// One received segment: buffer `bid` holds `len` bytes, `used` of them consumed.
struct Segment {
    bid: u16,
    len: usize,
    used: usize,
}

/// The state of one connection's multishot receive, kept in its `Source`: segments
/// the kernel delivered and the connection has not read yet, and how the request ended.
pub(crate) struct RecvMulti {
    ring: Rc<BufRing>,
    ready: VecDeque<Segment>,
    /// Unread bytes in `ready`.
    queued: usize,
    /// A cancellation was requested (the reader fell behind by `MAX_QUEUED_BYTES`).
    cancelling: bool,
    /// The request is in the kernel and will post more completions.
    pub(crate) armed: bool,
    /// The peer closed its side (a zero-length completion).
    pub(crate) eof: bool,
    /// A failure to report to the reader once the segments before it are read.
    pub(crate) error: Option<io::Error>,
}

impl RecvMulti {
    pub(crate) fn new(ring: Rc<BufRing>) -> RecvMulti {
        RecvMulti {
            ring,
            ready: VecDeque::new(),
            queued: 0,
            cancelling: false,
            armed: true,
            eof: false,
            error: None,
        }
    }

    /// Records one completion with raw `flags` and result `res`. True when the caller
    /// must cancel the request: the reader holds too many received bytes.
    pub(crate) fn complete(&mut self, res: i32, flags: u32) -> bool {
        if flags & CQE_F_MORE == 0 {
            self.armed = false;
        }
        match res {
            n if n > 0 => {
                assert!(flags & CQE_F_BUFFER != 0, "a multishot receive without a buffer");
                let bid = (flags >> CQE_BUFFER_SHIFT) as u16;
                self.ready.push_back(Segment {
                    bid,
                    len: n as usize,
                    used: 0,
                });
                self.queued += n as usize;
            }
            0 => self.eof = true,
            // Out of buffers, or cancelled: the reader re-arms (or has gone).
            e if -e == libc::ENOBUFS || -e == libc::ECANCELED => {}
            e => self.error = Some(io::Error::from_raw_os_error(-e)),
        }
        let cancel = self.armed && !self.cancelling && self.queued > MAX_QUEUED_BYTES;
        self.cancelling |= cancel;
        cancel
    }

    /// Copies received bytes into `buf`, consuming them; returns how many.
    pub(crate) fn read_into(&mut self, buf: &mut [u8]) -> usize {
        let mut n = 0;
        while n < buf.len() {
            let Some(seg) = self.ready.front_mut() else {
                break;
            };
            let take = (seg.len - seg.used).min(buf.len() - n);
            buf[n..n + take].copy_from_slice(self.ring.bytes(seg.bid, seg.used, seg.used + take));
            seg.used += take;
            n += take;
            self.queued -= take;
            if seg.used == seg.len {
                self.ring.recycle(seg.bid);
                self.ready.pop_front();
            }
        }
        n
    }

    /// Copies received bytes into `buf` without consuming them.
    pub(crate) fn peek_into(&self, buf: &mut [u8]) -> usize {
        let mut n = 0;
        for seg in &self.ready {
            let take = (seg.len - seg.used).min(buf.len() - n);
            buf[n..n + take].copy_from_slice(self.ring.bytes(seg.bid, seg.used, seg.used + take));
            n += take;
            if n == buf.len() {
                break;
            }
        }
        n
    }
}

impl Drop for RecvMulti {
    fn drop(&mut self) {
        for seg in self.ready.drain(..) {
            self.ring.recycle(seg.bid);
        }
    }
}

impl fmt::Debug for RecvMulti {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecvMulti")
            .field("segments", &self.ready.len())
            .field("armed", &self.armed)
            .field("eof", &self.eof)
            .finish()
    }
}
