/* CLibUV: the libuv headers for Swift, plus a few inline helpers.
 *
 * Why the helpers exist: libuv's handle and request types are related by C
 * struct prefixes (every uv_tcp_t starts with the fields of a uv_stream_t,
 * which start with those of a uv_handle_t).  C converts between them with a
 * cast; in Swift that cast is a pointer rebinding that is easy to get wrong,
 * so it is done here, once, by name.  Every symbol carries the clibuv_ prefix.
 */
#ifndef CLIBUV_SHIM_H
#define CLIBUV_SHIM_H

#include <uv.h>
#include <string.h>
#include <errno.h>
#include <sys/socket.h>
#include <sys/prctl.h>
#include <signal.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/resource.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <linux/errqueue.h>

/* The process's descriptor limits (RLIMIT_NOFILE), RLIM_INFINITY as UINT64_MAX. Returns 0 or -errno. */
static inline int clibuv_nofile_limits(uint64_t *soft, uint64_t *hard) {
    struct rlimit limit;
    if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return -errno;
    *soft = limit.rlim_cur == RLIM_INFINITY ? UINT64_MAX : (uint64_t)limit.rlim_cur;
    *hard = limit.rlim_max == RLIM_INFINITY ? UINT64_MAX : (uint64_t)limit.rlim_max;
    return 0;
}

/* Sets the soft descriptor limit (at most the hard one). Returns 0 or -errno. */
static inline int clibuv_set_nofile_soft(uint64_t soft) {
    struct rlimit limit;
    if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return -errno;
    limit.rlim_cur = soft == UINT64_MAX ? RLIM_INFINITY : (rlim_t)soft;
    if (setrlimit(RLIMIT_NOFILE, &limit) != 0) return -errno;
    return 0;
}

/* A spare descriptor (/dev/null, close-on-exec) a listener holds to give up when the process runs
 * out of descriptors. Returns it, or -errno. */
static inline int clibuv_open_spare_fd(void) {
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    return fd >= 0 ? fd : -errno;
}

/* Closes a descriptor opened by clibuv_open_spare_fd. */
static inline void clibuv_close_fd(int fd) {
    close(fd);
}

/* Lets go of the resident pages of this process's code and read-only data that nothing wrote: for
 * each private, read-only mapping of a file (the binary's and the libraries' code and constants)
 * that holds no anonymous page (no copy-on-write copy: no debugger breakpoint, no uprobe, no
 * relocated data), madvise(MADV_DONTNEED). The pages stay in the page cache, shared with every other process that
 * maps the file; code that runs again faults its page back in. What start-up alone ran (argument
 * parsing, the runtime's first scans of every image's conformance records) stops counting in the
 * resident set. Returns the KiB of resident pages let go, or -errno. /proc/self/smaps is read
 * whole before any madvise (which changes no mapping's bounds). */
static inline long clibuv_release_code_pages(void) {
    enum { max_ranges = 512 };
    unsigned long starts[max_ranges], ends[max_ranges];
    long rss_kib[max_ranges];
    int count = 0, current = 0; /* current: the mapping being read is a candidate */
    long rss = 0, anonymous = -1;
    FILE *smaps = fopen("/proc/self/smaps", "re");
    if (!smaps) return -errno;
    char line[1024];
    unsigned long start = 0, end = 0;
    for (int more = 1; more;) {
        more = fgets(line, sizeof line, smaps) != NULL;
        unsigned long a, b, offset, inode;
        char perms[8];
        unsigned int major, minor;
        int header = more && sscanf(line, "%lx-%lx %7s %lx %x:%x %lu", &a, &b, perms, &offset, &major, &minor, &inode) == 7;
        if (!more || header) {
            if (current && anonymous == 0 && rss > 0 && count < max_ranges) {
                starts[count] = start; ends[count] = end; rss_kib[count] = rss; count++;
            }
            if (!more) break;
            start = a; end = b; rss = 0; anonymous = -1;
            current = inode != 0 && (strcmp(perms, "r-xp") == 0 || strcmp(perms, "r--p") == 0);
            continue;
        }
        long kib;
        if (sscanf(line, "Rss: %ld kB", &kib) == 1) rss = kib;
        else if (sscanf(line, "Anonymous: %ld kB", &kib) == 1) anonymous = kib;
    }
    fclose(smaps);
    long released = 0;
    for (int i = 0; i < count; i++) {
        if (madvise((void *)starts[i], ends[i] - starts[i], MADV_DONTNEED) == 0) released += rss_kib[i];
    }
    return released;
}

/* Asks the kernel to send `sig` to this process when its parent ends (Linux's PR_SET_PDEATHSIG;
 * prctl is variadic, which Swift cannot call). Returns 0, or -1 when the parent had already
 * ended, or the call failed. `parent`: the parent's pid as read before the call. */
static inline int clibuv_signal_when_parent_exits(int sig, pid_t parent) {
    if (prctl(PR_SET_PDEATHSIG, (unsigned long)sig, 0UL, 0UL, 0UL) != 0) return -1;
    return getppid() == parent && parent != 1 ? 0 : -1;
}

/* A nonblocking send(2) on a connected stream socket: the bytes the kernel took, or a libuv-style
 * error (-errno; UV_EAGAIN when the socket buffer is full). MSG_NOSIGNAL: a peer that closed
 * gives EPIPE, never SIGPIPE. What uv_try_write does with write(2), minus the file layer's
 * position lock (fdget_pos) that a socket does not need. */
static inline ssize_t clibuv_send(uv_os_fd_t fd, const void *buf, size_t len) {
    for (;;) {
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n >= 0) return n;
        if (errno != EINTR) return -errno;
    }
}

/* Sends `count` datagrams in as few sendmmsg(2) calls as it takes (at most 64 per call) on a
 * nonblocking UDP socket: datagram i is bytes [starts[i], starts[i] + lengths[i]) of `base`, to
 * addrs[i]. Returns how many the kernel took (a short count when its buffer filled, EAGAIN), or
 * -errno when it took none and failed otherwise. sendmmsg through syscall(2) with the kernel's own
 * struct layout: glibc declares it only under _GNU_SOURCE, which this header cannot set for the
 * system headers Swift has already built. All memory is the caller's, borrowed for the call. */
struct clibuv_mmsghdr { struct msghdr msg_hdr; unsigned int msg_len; };
static inline int clibuv_udp_send_batch(uv_os_fd_t fd, const uint8_t *base, const uint32_t *starts,
                                        const uint32_t *lengths, const struct sockaddr_storage *addrs,
                                        int count) {
    enum { width = 64 };
    struct clibuv_mmsghdr msgs[width];
    struct iovec iov[width];
    int sent = 0, retries = 0;
    while (sent < count) {
        int n = count - sent < width ? count - sent : width;
        for (int i = 0; i < n; i++) {
            const struct sockaddr_storage *to = &addrs[sent + i];
            iov[i].iov_base = (void *)(base + starts[sent + i]);
            iov[i].iov_len = lengths[sent + i];
            memset(&msgs[i], 0, sizeof msgs[i]);
            msgs[i].msg_hdr.msg_name = (void *)to;
            msgs[i].msg_hdr.msg_namelen = to->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
            msgs[i].msg_hdr.msg_iov = &iov[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
        }
        long r = syscall(SYS_sendmmsg, fd, msgs, (unsigned int)n, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (r < 0) {
            if (errno == EINTR) continue;
            /* With IP_RECVERR (clibuv_udp_report_refusals), an earlier datagram's refusal is the
             * socket's pending error: it fails the next send once, that datagram unsent, and is
             * then cleared. It concerns another datagram: send this one again. */
            if ((errno == ECONNREFUSED || errno == EHOSTUNREACH || errno == ENETUNREACH) && retries++ < count) continue;
            return sent > 0 ? sent : -errno;
        }
        sent += (int)r;
        /* A short count: the socket's buffer is full (the next call says EAGAIN, and that ends
         * it), or a refusal failed the datagram after the last one taken, and is now cleared. Each datagram
         * is refused at most once: the retries are bounded by the count. */
        if (r < n && retries++ >= count) break;
    }
    return sent;
}

/* Asks the kernel to report ICMP errors on an unconnected UDP socket (IP_RECVERR, IPV6_RECVERR):
 * a datagram refused by the host it went to (nothing listens at the port: ICMP port unreachable)
 * is then queued on the socket's error queue, read by clibuv_udp_next_refused. Returns 0 or -errno. */
static inline int clibuv_udp_report_refusals(uv_os_fd_t fd, int ipv6) {
    int on = 1;
    int r = ipv6 ? setsockopt(fd, IPPROTO_IPV6, IPV6_RECVERR, &on, sizeof on)
                 : setsockopt(fd, IPPROTO_IP, IP_RECVERR, &on, sizeof on);
    return r == 0 ? 0 : -errno;
}

/* Takes one entry off the socket's error queue (nonblocking). Returns 1 and fills `to` with the
 * address the refused datagram was sent to when the entry is a refusal (ICMP or ICMPv6 saying
 * ECONNREFUSED), 0 for another entry (read and dropped), -1 when the queue is empty or on error.
 * The datagram's bytes come back too, into a small scratch buffer, and are dropped. */
static inline int clibuv_udp_next_refused(uv_os_fd_t fd, struct sockaddr_storage *to) {
    unsigned char data[64];
    union { char buf[512]; struct cmsghdr align; } control;
    struct iovec iov = { data, sizeof data };
    struct msghdr msg;
    memset(&msg, 0, sizeof msg);
    msg.msg_name = to;
    msg.msg_namelen = sizeof *to;
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.buf;
    msg.msg_controllen = sizeof control.buf;
    if (recvmsg(fd, &msg, MSG_ERRQUEUE | MSG_DONTWAIT) < 0) return -1;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
        int ip = c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_RECVERR;
        int ip6 = c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_RECVERR;
        if (!ip && !ip6) continue;
        const struct sock_extended_err *e = (const struct sock_extended_err *)CMSG_DATA(c);
        int icmp = e->ee_origin == SO_EE_ORIGIN_ICMP || e->ee_origin == SO_EE_ORIGIN_ICMP6;
        if (icmp && e->ee_errno == ECONNREFUSED && msg.msg_namelen > 0) return 1;
    }
    return 0;
}

static inline uv_handle_t *clibuv_tcp_as_handle(uv_tcp_t *h) { return (uv_handle_t *)h; }
static inline uv_stream_t *clibuv_tcp_as_stream(uv_tcp_t *h) { return (uv_stream_t *)h; }
static inline uv_handle_t *clibuv_udp_as_handle(uv_udp_t *h) { return (uv_handle_t *)h; }
static inline uv_handle_t *clibuv_timer_as_handle(uv_timer_t *h) { return (uv_handle_t *)h; }
static inline uv_handle_t *clibuv_async_as_handle(uv_async_t *h) { return (uv_handle_t *)h; }
static inline uv_tcp_t *clibuv_stream_as_tcp(uv_stream_t *s) { return (uv_tcp_t *)s; }
static inline uv_req_t *clibuv_work_as_req(uv_work_t *r) { return (uv_req_t *)r; }

/* sockaddr_storage is large enough for IPv4 and IPv6; these give it the
 * shapes the socket calls expect. */
static inline const struct sockaddr *clibuv_sockaddr(const struct sockaddr_storage *s) {
    return (const struct sockaddr *)s;
}
static inline struct sockaddr *clibuv_sockaddr_mut(struct sockaddr_storage *s) {
    return (struct sockaddr *)s;
}

/* The port of an IPv4 or IPv6 address, in host byte order; 0 for others. */
static inline int clibuv_sockaddr_port(const struct sockaddr_storage *s) {
    if (s->ss_family == AF_INET) return ntohs(((const struct sockaddr_in *)s)->sin_port);
    if (s->ss_family == AF_INET6) return ntohs(((const struct sockaddr_in6 *)s)->sin6_port);
    return 0;
}

/* The numeric host of an IPv4 or IPv6 address into buf (at least 64 bytes). */
static inline int clibuv_sockaddr_host(const struct sockaddr_storage *s, char *buf, size_t len) {
    if (s->ss_family == AF_INET) return uv_ip4_name((const struct sockaddr_in *)s, buf, len);
    if (s->ss_family == AF_INET6) return uv_ip6_name((const struct sockaddr_in6 *)s, buf, len);
    return UV_EAFNOSUPPORT;
}

/* uv_ip4_addr/uv_ip6_addr into a sockaddr_storage. */
static inline int clibuv_parse_ip(const char *host, int port, struct sockaddr_storage *out) {
    memset(out, 0, sizeof(*out));
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)out) == 0) return 0;
    memset(out, 0, sizeof(*out));
    return uv_ip6_addr(host, port, (struct sockaddr_in6 *)out);
}

#endif
