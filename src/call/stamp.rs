//! When a UDP datagram reached this host, by the kernel's own stamp (`SO_TIMESTAMPNS`), as the
//! monotonic `Instant` every call timing is made of.
//!
//! Invariant: an arrival instant is never later than the return of the read that got the
//! datagram. With a kernel stamp it does not move with how long our reader was descheduled
//! before reading; without one (the option refused, no control message) it is the read time,
//! which is no error, only the less exact stamp we had before. The call channel's unsafe code
//! is here and only here: `set_timestamping` and `recvmsg_stamped`, each one libc call.

use crate::clock;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Asks the kernel to stamp every datagram this socket receives with its arrival time.
/// A refusal is returned for the caller to log; reads on the socket still work, unstamped.
pub fn enable(socket: &impl AsFd) -> io::Result<()> {
    set_timestamping(socket.as_fd())
}

/// One datagram from a blocking socket (or a non-blocking one that is readable): its length,
/// its sender and the instant it arrived. A datagram longer than `buf` is cut, as `recv_from`.
pub fn recv_from(socket: &impl AsFd, buf: &mut [u8]) -> io::Result<(usize, SocketAddr, Instant)> {
    let (len, from, kernel) = recvmsg_stamped(socket.as_fd(), buf)?;
    Ok((len, from, arrival(kernel)))
}

/// `recv_from` on a tokio socket: waits until it is readable, then reads as above.
pub async fn recv_from_async(
    socket: &tokio::net::UdpSocket,
    buf: &mut [u8],
) -> io::Result<(usize, SocketAddr, Instant)> {
    socket
        .async_io(tokio::io::Interest::READABLE, || recv_from(socket, buf))
        .await
}

fn arrival(kernel: Option<SystemTime>) -> Instant {
    match kernel {
        Some(t) => clock::instant_of_realtime(t),
        None => Instant::now(),
    }
}

#[allow(unsafe_code)] // one setsockopt, justified below
fn set_timestamping(fd: BorrowedFd<'_>) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: `fd` is a live socket borrowed for the call; the option value is a c_int on our
    // stack whose exact size is passed, and the kernel only reads it.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Room for the control messages of one datagram: SCM_TIMESTAMPNS takes CMSG_SPACE(16) = 32
/// bytes on 64-bit Linux; more is spare. Aligned as a `cmsghdr` (whose widest field is a
/// `size_t`), as CMSG_FIRSTHDR expects of the buffer it walks.
#[repr(C, align(8))]
struct Control([u8; 64]);

/// Control messages looked at per datagram, at most: only the timestamp one is enabled.
const MAX_CMSGS: usize = 4;

/// `recvmsg(2)` of one datagram into `buf`, with its sender and the kernel's SCM_TIMESTAMPNS
/// stamp (CLOCK_REALTIME) when there is one.
#[allow(unsafe_code)] // one recvmsg and the reading of what it filled in, justified below
fn recvmsg_stamped(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
) -> io::Result<(usize, SocketAddr, Option<SystemTime>)> {
    let mut control = Control([0; 64]);
    // SAFETY (both zeroed): plain C structs for which all-zero bytes are a valid value;
    // `msghdr` is built this way because some libcs give it private padding fields.
    let mut name: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    msg.msg_name = (&mut name as *mut libc::sockaddr_storage).cast();
    msg.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.0.as_mut_ptr().cast();
    msg.msg_controllen = control.0.len() as _;
    // SAFETY: every pointer in `msg` points at a live local (`name`, `iov`, `control`) or at
    // `buf`, with its true length, and all outlive the call; the kernel writes within those
    // lengths and updates `msg_namelen`/`msg_controllen` to what it wrote. The control messages
    // are then walked only with the CMSG_* functions, which stay inside `msg_controllen`, and
    // the timestamp is copied out with an unaligned read of exactly one `timespec`, after
    // checking its header says that is what it holds. `name` is read as the address type its
    // family names; it was zeroed, so any byte the kernel did not write is a valid zero.
    let (len, from, stamp) = unsafe {
        let n = libc::recvmsg(fd.as_raw_fd(), &mut msg, 0);
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let from = match libc::c_int::from(name.ss_family) {
            libc::AF_INET => {
                let a = &*(&name as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>();
                SocketAddr::V4(SocketAddrV4::new(
                    Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                    u16::from_be(a.sin_port),
                ))
            }
            libc::AF_INET6 => {
                let a = &*(&name as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>();
                SocketAddr::V6(SocketAddrV6::new(
                    Ipv6Addr::from(a.sin6_addr.s6_addr),
                    u16::from_be(a.sin6_port),
                    a.sin6_flowinfo,
                    a.sin6_scope_id,
                ))
            }
            _ => return Err(io::Error::other("datagram from a non-IP address")),
        };
        let want_len = libc::CMSG_LEN(std::mem::size_of::<libc::timespec>() as libc::c_uint);
        let mut stamp = None;
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        for _ in 0..MAX_CMSGS {
            if cmsg.is_null() {
                break;
            }
            let h = &*cmsg;
            if h.cmsg_level == libc::SOL_SOCKET
                && h.cmsg_type == libc::SCM_TIMESTAMPNS
                && h.cmsg_len >= want_len as _
            {
                stamp = Some(std::ptr::read_unaligned(
                    libc::CMSG_DATA(cmsg).cast::<libc::timespec>(),
                ));
                break;
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
        (n as usize, from, stamp)
    };
    Ok((len, from, stamp.and_then(realtime)))
}

/// A kernel `timespec` of CLOCK_REALTIME as a `SystemTime`; none for a zero or malformed one.
fn realtime(ts: libc::timespec) -> Option<SystemTime> {
    let secs = u64::try_from(ts.tv_sec).ok().filter(|&s| s > 0)?;
    let nanos = u32::try_from(ts.tv_nsec)
        .ok()
        .filter(|&n| n < 1_000_000_000)?;
    UNIX_EPOCH.checked_add(Duration::new(secs, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCALHOST: &str = "127.0.0.1:0";

    /// The defect this module fixes: a reader that gets to a datagram 50 ms after it arrived
    /// (here it sleeps; in the lab it was descheduled) must still time it at its arrival.
    #[test]
    fn a_datagram_read_late_is_timed_at_its_arrival_not_at_the_read() {
        let socket = std::net::UdpSocket::bind(LOCALHOST).expect("bind");
        enable(&socket).expect("SO_TIMESTAMPNS on Linux");
        socket
            .set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let peer = std::net::UdpSocket::bind(LOCALHOST).expect("peer");
        peer.send_to(
            b"SIP/2.0 180 Ringing\r\n\r\n",
            socket.local_addr().expect("addr"),
        )
        .expect("send");
        std::thread::sleep(Duration::from_millis(50));
        let mut buf = [0u8; 64];
        let (n, from, at) = recv_from(&socket, &mut buf).expect("recv");
        let read_at = Instant::now();
        assert_eq!(&buf[..n], b"SIP/2.0 180 Ringing\r\n\r\n");
        assert_eq!(from, peer.local_addr().expect("peer addr"));
        assert!(at <= read_at, "an arrival is never after its read");
        // Without the kernel stamp this is the read time, well under a millisecond before
        // `read_at`; a loaded machine can only sleep longer, so no upper bound is asserted.
        let waited = read_at - at;
        assert!(
            waited >= Duration::from_millis(45),
            "timed {waited:?} before the read, expected about 50 ms"
        );
    }

    #[tokio::test]
    async fn a_tokio_socket_read_late_is_timed_at_the_arrival_too() {
        let std_socket = std::net::UdpSocket::bind(LOCALHOST).expect("bind");
        std_socket.set_nonblocking(true).expect("nonblocking");
        enable(&std_socket).expect("SO_TIMESTAMPNS on Linux");
        let socket = tokio::net::UdpSocket::from_std(std_socket).expect("tokio socket");
        let peer = tokio::net::UdpSocket::bind(LOCALHOST).await.expect("peer");
        peer.send_to(&[0x80, 0, 0, 1], socket.local_addr().expect("addr"))
            .await
            .expect("send");
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut buf = [0u8; 64];
        let (n, from, at) =
            tokio::time::timeout(Duration::from_secs(2), recv_from_async(&socket, &mut buf))
                .await
                .expect("a datagram within 2 s")
                .expect("recv");
        let read_at = Instant::now();
        assert_eq!(n, 4);
        assert_eq!(from, peer.local_addr().expect("peer addr"));
        assert!(at <= read_at);
        assert!(
            read_at - at >= Duration::from_millis(45),
            "{:?}",
            read_at - at
        );
    }

    #[test]
    fn a_socket_without_the_option_gives_the_read_time_and_no_error() {
        let socket = std::net::UdpSocket::bind(LOCALHOST).expect("bind");
        let peer = std::net::UdpSocket::bind(LOCALHOST).expect("peer");
        peer.send_to(b"x", socket.local_addr().expect("addr"))
            .expect("send");
        std::thread::sleep(Duration::from_millis(20));
        socket
            .set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let before = Instant::now();
        let mut buf = [0u8; 8];
        let (n, _, at) = recv_from(&socket, &mut buf).expect("recv");
        assert_eq!(n, 1);
        assert!(at >= before, "no stamp: the read time");
    }

    #[test]
    fn an_ipv6_sender_is_read_back_as_itself() {
        // No silent skip: a machine without ::1 fails here and says so.
        let socket = std::net::UdpSocket::bind("[::1]:0").expect("an IPv6 loopback (::1)");
        enable(&socket).expect("option");
        let peer = std::net::UdpSocket::bind("[::1]:0").expect("peer");
        peer.send_to(b"v6", socket.local_addr().expect("addr"))
            .expect("send");
        socket
            .set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let mut buf = [0u8; 8];
        let (n, from, _) = recv_from(&socket, &mut buf).expect("recv");
        assert_eq!(&buf[..n], b"v6");
        assert_eq!(from, peer.local_addr().expect("peer addr"));
    }

    #[test]
    fn a_datagram_longer_than_the_buffer_is_cut_as_recv_from_cuts_it() {
        let socket = std::net::UdpSocket::bind(LOCALHOST).expect("bind");
        enable(&socket).expect("option");
        let peer = std::net::UdpSocket::bind(LOCALHOST).expect("peer");
        peer.send_to(&[7u8; 100], socket.local_addr().expect("addr"))
            .expect("send");
        socket
            .set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let mut buf = [0u8; 10];
        let (n, _, _) = recv_from(&socket, &mut buf).expect("recv");
        assert_eq!(n, 10);
    }

    #[test]
    fn zero_and_malformed_kernel_times_are_no_stamp() {
        let ts = |tv_sec, tv_nsec| libc::timespec { tv_sec, tv_nsec };
        assert_eq!(realtime(ts(0, 0)), None);
        assert_eq!(realtime(ts(-5, 0)), None);
        assert_eq!(realtime(ts(1, 1_000_000_000)), None);
        assert_eq!(
            realtime(ts(1_700_000_000, 5)),
            Some(UNIX_EPOCH + Duration::new(1_700_000_000, 5))
        );
    }
}
