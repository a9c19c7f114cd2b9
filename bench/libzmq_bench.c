/*
 * libzmq_bench: the libzmq (and raw TCP) side of volley's TCP benchmarks, the same shapes
 * as examples/tcp_bench.rs so scripts/bench-tcp.sh can put them side by side.
 *
 * Build (scripts/bench-tcp.sh does this into target/bench/):
 *   cc -O2 -o target/bench/libzmq_bench bench/libzmq_bench.c $(pkg-config --cflags --libs libzmq) -lpthread
 *
 * Usage:
 *   libzmq_bench thr [--size B] [--count N]
 *       PUB -> SUB throughput over tcp://127.0.0.1, publisher and subscriber in two threads
 *       with a context each. Every message is 2 frames, like volley's: the topic "bench"
 *       and a payload of B bytes; the SUB subscribes to "bench". The publisher is an XPUB
 *       that waits for the subscription before the first send (no slow joiner), and both
 *       high-water marks are 0 (unlimited), so nothing is dropped. The clock runs at the
 *       subscriber from the first message to the N-th. MB/s counts payload bytes, 10^6.
 *   libzmq_bench lat [--size B] [--count N] [--warmup W] [--busy]
 *       Ping-pong over two PUB/SUB pairs (pinger PUB -> ponger SUB, ponger PUB -> pinger
 *       SUB): the shape volley measures, since volley has only pub/sub; REQ/REP or PAIR
 *       would be a different socket pattern. N timed round trips after W untimed ones;
 *       prints RTT/2 (one-way estimate) p50/p99/mean in microseconds. --busy receives with
 *       ZMQ_DONTWAIT in a spin loop instead of blocking (libzmq has no true busy-poll: its
 *       I/O thread still sleeps in epoll).
 *   libzmq_bench raw [--size B] [--count N] [--warmup W] [--busy] [--pair]
 *       The baseline: a plain TCP connection on loopback (TCP_NODELAY), B-byte messages
 *       bounced between two threads. Blocking read()/write(), or with --busy a
 *       non-blocking socket polled with recv() in a spin loop. With --pair, pings go over
 *       one connection and pongs over a second, each one-way: the topology of the two
 *       PUB->SUB pairs that lat (and volley's ping-pong) use, where every data segment
 *       is answered by a separate ACK instead of riding on the reply. Same output as lat
 *       (impl=raw-pair).
 *
 * Output: one machine-readable line per run, e.g.
 *   RESULT impl=libzmq mode=thr size=64 count=1000000 received=1000000 secs=0.512 msgs_per_s=1953125 mb_per_s=125.00
 *   RESULT impl=raw mode=lat recv=busy size=64 rounds=20000 p50_us=9.81 p99_us=14.02 mean_us=10.12
 * Exit status 0 on success, 1 on an error (with a message on stderr).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#define TOPIC "bench"
#define TOPIC_LEN 5

static size_t opt_size = 64;
static long opt_count = 0;
static long opt_warmup = 1000;
static int opt_busy = 0;
static int opt_pair = 0;

static void die(const char *what)
{
    fprintf(stderr, "libzmq_bench: %s: %s\n", what, zmq_strerror(errno));
    exit(1);
}

static void check(int rc, const char *what)
{
    if (rc < 0)
        die(what);
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void put_seq(unsigned char *buf, size_t len, uint64_t seq)
{
    if (len >= 8)
        memcpy(buf, &seq, 8);
}

static uint64_t get_seq(const unsigned char *buf, size_t len)
{
    uint64_t seq = 0;
    if (len >= 8)
        memcpy(&seq, buf, 8);
    return seq;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Prints the RESULT line of a latency run from N round-trip times in nanoseconds. */
static void report_lat(const char *impl, uint64_t *rtt, long n)
{
    qsort(rtt, (size_t)n, sizeof *rtt, cmp_u64);
    long i99 = (long)((double)n * 0.99);
    if (i99 >= n)
        i99 = n - 1;
    double sum = 0;
    for (long i = 0; i < n; i++)
        sum += (double)rtt[i];
    printf("RESULT impl=%s mode=lat recv=%s size=%zu rounds=%ld p50_us=%.2f p99_us=%.2f mean_us=%.2f\n",
           impl, opt_busy ? "busy" : "blocking", opt_size, n, (double)rtt[n / 2] / 2000.0,
           (double)rtt[i99] / 2000.0, sum / (double)n / 2000.0);
    fflush(stdout);
}

/* ---- libzmq helpers ---------------------------------------------------------------- */

static void *xpub_bind(void *ctx, char *endpoint, size_t cap)
{
    void *s = zmq_socket(ctx, ZMQ_XPUB);
    if (!s)
        die("zmq_socket(XPUB)");
    int zero = 0;
    check(zmq_setsockopt(s, ZMQ_SNDHWM, &zero, sizeof zero), "SNDHWM");
    check(zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero), "LINGER");
    check(zmq_bind(s, "tcp://127.0.0.1:*"), "zmq_bind");
    check(zmq_getsockopt(s, ZMQ_LAST_ENDPOINT, endpoint, &cap), "LAST_ENDPOINT");
    return s;
}

static void *sub_connect(void *ctx, const char *endpoint)
{
    void *s = zmq_socket(ctx, ZMQ_SUB);
    if (!s)
        die("zmq_socket(SUB)");
    int zero = 0;
    check(zmq_setsockopt(s, ZMQ_RCVHWM, &zero, sizeof zero), "RCVHWM");
    check(zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero), "LINGER");
    check(zmq_setsockopt(s, ZMQ_SUBSCRIBE, TOPIC, TOPIC_LEN), "SUBSCRIBE");
    check(zmq_connect(s, endpoint), "zmq_connect");
    return s;
}

/* Blocks until the XPUB has seen one subscribe message. */
static void await_subscription(void *xpub)
{
    char buf[64];
    int rcvtimeo = 10000;
    check(zmq_setsockopt(xpub, ZMQ_RCVTIMEO, &rcvtimeo, sizeof rcvtimeo), "RCVTIMEO");
    for (;;) {
        int n = zmq_recv(xpub, buf, sizeof buf, 0);
        if (n < 0)
            die("waiting for the subscription");
        if (n > 0 && buf[0] == 1)
            return;
    }
}

static void send_msg(void *pub, const void *payload, size_t len)
{
    if (zmq_send(pub, TOPIC, TOPIC_LEN, ZMQ_SNDMORE) < 0)
        die("zmq_send(topic)");
    if (zmq_send(pub, payload, len, 0) < 0)
        die("zmq_send(payload)");
}

/* Receives one 2-frame message; the payload is left in *payload (caller closes it). */
static void recv_msg(void *sub, zmq_msg_t *topic, zmq_msg_t *payload)
{
    int flags = opt_busy ? ZMQ_DONTWAIT : 0;
    for (;;) {
        if (zmq_msg_recv(topic, sub, flags) >= 0)
            break;
        if (errno != EAGAIN)
            die("zmq_msg_recv(topic)");
    }
    if (!zmq_msg_more(topic)) {
        fprintf(stderr, "libzmq_bench: a message with one frame\n");
        exit(1);
    }
    if (zmq_msg_recv(payload, sub, 0) < 0)
        die("zmq_msg_recv(payload)");
}

/* ---- thr ----------------------------------------------------------------------------- */

struct thr_sub {
    void *sub;
    long received;
    uint64_t elapsed_ns;
};

static void *thr_sub_main(void *arg)
{
    struct thr_sub *t = arg;
    zmq_msg_t topic, payload;
    zmq_msg_init(&topic);
    zmq_msg_init(&payload);
    uint64_t start = 0;
    for (long i = 0; i < opt_count; i++) {
        recv_msg(t->sub, &topic, &payload);
        if (i == 0)
            start = now_ns();
        if (zmq_msg_size(&payload) != opt_size) {
            fprintf(stderr, "libzmq_bench: payload of %zu bytes, expected %zu\n",
                    zmq_msg_size(&payload), opt_size);
            exit(1);
        }
        t->received++;
    }
    t->elapsed_ns = now_ns() - start;
    zmq_msg_close(&topic);
    zmq_msg_close(&payload);
    return NULL;
}

static void run_thr(void)
{
    void *pctx = zmq_ctx_new(), *sctx = zmq_ctx_new();
    char ep[256];
    void *pub = xpub_bind(pctx, ep, sizeof ep);
    void *sub = sub_connect(sctx, ep);
    await_subscription(pub);

    struct thr_sub t = {.sub = sub};
    pthread_t th;
    pthread_create(&th, NULL, thr_sub_main, &t);

    unsigned char *payload = calloc(1, opt_size ? opt_size : 1);
    for (long i = 0; i < opt_count; i++) {
        put_seq(payload, opt_size, (uint64_t)i);
        send_msg(pub, payload, opt_size);
    }
    pthread_join(th, NULL);

    double secs = (double)t.elapsed_ns / 1e9;
    double rate = secs > 0 ? (double)t.received / secs : 0;
    printf("RESULT impl=libzmq mode=thr size=%zu count=%ld received=%ld secs=%.3f msgs_per_s=%.0f mb_per_s=%.2f\n",
           opt_size, opt_count, t.received, secs, rate, rate * (double)opt_size / 1e6);
    fflush(stdout);
    free(payload);
    zmq_close(pub);
    zmq_close(sub);
    zmq_ctx_term(pctx);
    zmq_ctx_term(sctx);
}

/* ---- lat ----------------------------------------------------------------------------- */

struct ponger {
    void *sub, *pub;
    long rounds;
};

static void *ponger_main(void *arg)
{
    struct ponger *p = arg;
    zmq_msg_t topic, payload;
    zmq_msg_init(&topic);
    zmq_msg_init(&payload);
    for (long i = 0; i < p->rounds; i++) {
        recv_msg(p->sub, &topic, &payload);
        send_msg(p->pub, zmq_msg_data(&payload), zmq_msg_size(&payload));
    }
    zmq_msg_close(&topic);
    zmq_msg_close(&payload);
    return NULL;
}

static void run_lat(void)
{
    void *ping_ctx = zmq_ctx_new(), *pong_ctx = zmq_ctx_new();
    char ep_a[256], ep_b[256];
    void *pub_a = xpub_bind(ping_ctx, ep_a, sizeof ep_a);
    void *pub_b = xpub_bind(pong_ctx, ep_b, sizeof ep_b);
    void *sub_a = sub_connect(pong_ctx, ep_a); /* ponger receives pings */
    void *sub_b = sub_connect(ping_ctx, ep_b); /* pinger receives pongs */
    await_subscription(pub_a);
    await_subscription(pub_b);

    long total = opt_warmup + opt_count;
    struct ponger p = {.sub = sub_a, .pub = pub_b, .rounds = total};
    pthread_t th;
    pthread_create(&th, NULL, ponger_main, &p);

    uint64_t *rtt = malloc(sizeof *rtt * (size_t)(opt_count ? opt_count : 1));
    unsigned char *buf = calloc(1, opt_size ? opt_size : 1);
    zmq_msg_t topic, payload;
    zmq_msg_init(&topic);
    zmq_msg_init(&payload);
    for (long i = 0; i < total; i++) {
        put_seq(buf, opt_size, (uint64_t)i);
        uint64_t t0 = now_ns();
        send_msg(pub_a, buf, opt_size);
        recv_msg(sub_b, &topic, &payload);
        uint64_t t1 = now_ns();
        if (zmq_msg_size(&payload) != opt_size ||
            get_seq(zmq_msg_data(&payload), opt_size) != (uint64_t)i) {
            fprintf(stderr, "libzmq_bench: pong %ld does not echo its ping\n", i);
            exit(1);
        }
        if (i >= opt_warmup)
            rtt[i - opt_warmup] = t1 - t0;
    }
    pthread_join(th, NULL);
    report_lat("libzmq", rtt, opt_count);
    zmq_msg_close(&topic);
    zmq_msg_close(&payload);
    free(rtt);
    free(buf);
    zmq_close(pub_a);
    zmq_close(pub_b);
    zmq_close(sub_a);
    zmq_close(sub_b);
    zmq_ctx_term(ping_ctx);
    zmq_ctx_term(pong_ctx);
}

/* ---- raw ----------------------------------------------------------------------------- */

static void sys_die(const char *what)
{
    fprintf(stderr, "libzmq_bench: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void raw_read(int fd, unsigned char *buf, size_t len)
{
    size_t got = 0;
    while (got < len) {
        ssize_t n = recv(fd, buf + got, len - got, 0);
        if (n > 0) {
            got += (size_t)n;
        } else if (n == 0) {
            fprintf(stderr, "libzmq_bench: raw peer closed\n");
            exit(1);
        } else if (errno != EAGAIN && errno != EINTR) {
            sys_die("recv");
        }
    }
}

static void raw_write(int fd, const unsigned char *buf, size_t len)
{
    size_t put = 0;
    while (put < len) {
        ssize_t n = send(fd, buf + put, len - put, MSG_NOSIGNAL);
        if (n > 0)
            put += (size_t)n;
        else if (n < 0 && errno != EAGAIN && errno != EINTR)
            sys_die("send");
    }
}

static void raw_setup(int fd)
{
    int one = 1;
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0)
        sys_die("TCP_NODELAY");
    if (opt_busy && fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0)
        sys_die("O_NONBLOCK");
}

struct raw_ponger {
    int in_fd;
    int out_fd;
    long rounds;
};

static void *raw_ponger_main(void *arg)
{
    struct raw_ponger *p = arg;
    unsigned char *buf = calloc(1, opt_size ? opt_size : 1);
    for (long i = 0; i < p->rounds; i++) {
        raw_read(p->in_fd, buf, opt_size);
        raw_write(p->out_fd, buf, opt_size);
    }
    free(buf);
    return NULL;
}

/* A connected loopback pair: *client and *server. */
static void raw_connect(int *client, int *server)
{
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = 0};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t alen = sizeof addr;
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(lfd, 1) < 0 ||
        getsockname(lfd, (struct sockaddr *)&addr, &alen) < 0)
        sys_die("listen");
    int cfd = socket(AF_INET, SOCK_STREAM, 0);
    if (cfd < 0 || connect(cfd, (struct sockaddr *)&addr, sizeof addr) < 0)
        sys_die("connect");
    int afd = accept(lfd, NULL, NULL);
    if (afd < 0)
        sys_die("accept");
    close(lfd);
    raw_setup(cfd);
    raw_setup(afd);
    *client = cfd;
    *server = afd;
}

static void run_raw(void)
{
    if (opt_size == 0) {
        fprintf(stderr, "libzmq_bench: raw needs --size >= 1\n");
        exit(1);
    }
    /* One connection carries pings and pongs both ways; with --pair, pings go over one
     * connection and pongs over another, each one-way, as PUB->SUB pairs do. */
    int cfd, afd, ping_in, pong_out;
    raw_connect(&cfd, &afd);
    int pong_in = cfd, ping_out = cfd;
    ping_in = afd;
    pong_out = afd;
    int cfd2 = -1, afd2 = -1;
    if (opt_pair) {
        raw_connect(&cfd2, &afd2);
        pong_out = cfd2; /* the ponger writes on its own connection */
        pong_in = afd2;
    }

    long total = opt_warmup + opt_count;
    struct raw_ponger p = {.in_fd = ping_in, .out_fd = pong_out, .rounds = total};
    pthread_t th;
    pthread_create(&th, NULL, raw_ponger_main, &p);

    uint64_t *rtt = malloc(sizeof *rtt * (size_t)(opt_count ? opt_count : 1));
    unsigned char *buf = calloc(1, opt_size);
    for (long i = 0; i < total; i++) {
        put_seq(buf, opt_size, (uint64_t)i);
        uint64_t t0 = now_ns();
        raw_write(ping_out, buf, opt_size);
        raw_read(pong_in, buf, opt_size);
        uint64_t t1 = now_ns();
        if (get_seq(buf, opt_size) != (uint64_t)i) {
            fprintf(stderr, "libzmq_bench: raw pong %ld does not echo its ping\n", i);
            exit(1);
        }
        if (i >= opt_warmup)
            rtt[i - opt_warmup] = t1 - t0;
    }
    pthread_join(th, NULL);
    report_lat(opt_pair ? "raw-pair" : "raw", rtt, opt_count);
    free(rtt);
    free(buf);
    close(cfd);
    close(afd);
    if (opt_pair) {
        close(cfd2);
        close(afd2);
    }
}

/* ---- main ---------------------------------------------------------------------------- */

static void usage(void)
{
    fprintf(stderr,
            "usage: libzmq_bench thr [--size B] [--count N]\n"
            "       libzmq_bench lat [--size B] [--count N] [--warmup W] [--busy]\n"
            "       libzmq_bench raw [--size B] [--count N] [--warmup W] [--busy] [--pair]\n"
            "defaults: --size 64, --count 1000000 (thr) / 20000 (lat, raw), --warmup 1000\n");
    exit(2);
}

int main(int argc, char **argv)
{
    if (argc < 2)
        usage();
    const char *mode = argv[1];
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--busy"))
            opt_busy = 1;
        else if (!strcmp(argv[i], "--pair"))
            opt_pair = 1;
        else if (i + 1 < argc && !strcmp(argv[i], "--size"))
            opt_size = (size_t)strtoul(argv[++i], NULL, 10);
        else if (i + 1 < argc && !strcmp(argv[i], "--count"))
            opt_count = strtol(argv[++i], NULL, 10);
        else if (i + 1 < argc && !strcmp(argv[i], "--warmup"))
            opt_warmup = strtol(argv[++i], NULL, 10);
        else
            usage();
    }
    if (!strcmp(mode, "thr")) {
        if (opt_count <= 0)
            opt_count = 1000000;
        run_thr();
    } else if (!strcmp(mode, "lat") || !strcmp(mode, "raw")) {
        if (opt_count <= 0)
            opt_count = 20000;
        if (opt_warmup < 0)
            opt_warmup = 0;
        if (!strcmp(mode, "lat"))
            run_lat();
        else
            run_raw();
    } else {
        usage();
    }
    return 0;
}
