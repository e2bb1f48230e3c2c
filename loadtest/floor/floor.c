/* loadtest/floor/floor.c — the floor: what an HTTP server that does nothing but read
 * and write costs on this machine (see loadtest/README.md, "The floor").
 *
 * It answers every request with a canned response from memory, with no Redis and no
 * work besides finding where each request ends and which path it names. It has the
 * event-loop shape of webdis-rs, so that the CPU time per request of the two compares
 * what webdis-rs does per request on top of reading and writing sockets:
 *   - one thread per worker, each pinned to a core (unless PIN is 0), each with its own
 *     epoll instance and its own listening socket (SO_REUSEPORT, no accept thread);
 *   - edge-triggered: a listener accepts until EAGAIN; a connection reads until it is
 *     drained (EAGAIN, or a read shorter than the room offered), and every complete
 *     request of what it read gets its response appended to the connection's output;
 *   - at the end of each loop turn, one write() per connection with output, of all its
 *     responses; EPOLLOUT is asked for only while a write left bytes behind;
 *   - TCP_NODELAY; the Date header is refreshed once a second (clock read once per turn).
 *
 * The responses are given as files holding a whole raw response (the harness captures
 * them from webdis-rs, so the head, the ETag and the body are byte for byte those of
 * webdis-rs; only the Date value is rewritten). A request is a head ending in an empty
 * line; request bodies are not supported (the load test only sends GETs). A path
 * without a response gets a 404.
 *
 * usage: floor PORT THREADS PIN PATH FILE [PATH FILE]...
 * Build: cc -O2 -pthread -o floor floor.c   (loadtest/run does it in its temp dir)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_ROUTES 16
#define MAX_EVENTS 1024
#define READ_MIN 1024 /* least room offered to a read, like webdis-rs's READ_CHUNK */

struct route {
    const char *path;
    size_t path_len;
    char *resp; /* this thread's copy: its Date is rewritten in place */
    size_t len;
    long date_at; /* offset of the 29 bytes of the Date value, or -1 */
};

struct conn {
    int fd;
    int dirty;    /* in the worker's list of connections to write this turn */
    int want_out; /* registered for EPOLLOUT */
    char *in;
    size_t in_len, in_cap;
    char *out;
    size_t out_len, out_off, out_cap;
};

struct worker {
    int id, pin, ep, lfd;
    struct route routes[MAX_ROUTES];
    int nroutes;
    time_t date_secs;
    struct conn **dirty;
    size_t ndirty, dirty_cap;
};

static const char NOT_FOUND[] = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
static struct route g_routes[MAX_ROUTES];
static int g_nroutes, g_port;

static void die(const char *what) {
    perror(what);
    exit(1);
}

static void *xrealloc(void *p, size_t n) {
    p = realloc(p, n);
    if (!p)
        die("realloc");
    return p;
}

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    struct stat st;
    if (!f || fstat(fileno(f), &st) != 0)
        die(path);
    char *buf = xrealloc(NULL, st.st_size ? st.st_size : 1);
    if (fread(buf, 1, st.st_size, f) != (size_t)st.st_size)
        die(path);
    fclose(f);
    *len = st.st_size;
    return buf;
}

static int listener(int reuseport) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(g_port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0)
        die("socket");
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0)
        die("SO_REUSEPORT");
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0)
        die("bind");
    if (reuseport && listen(fd, 1024) != 0)
        die("listen");
    return fd;
}

static void refresh_date(struct worker *w) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (ts.tv_sec == w->date_secs)
        return;
    w->date_secs = ts.tv_sec;
    struct tm tm;
    char date[30];
    gmtime_r(&ts.tv_sec, &tm);
    strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    for (int i = 0; i < w->nroutes; i++)
        if (w->routes[i].date_at >= 0)
            memcpy(w->routes[i].resp + w->routes[i].date_at, date, 29);
}

static void append(struct conn *c, const char *p, size_t n) {
    if (c->out_len + n > c->out_cap) {
        size_t cap = c->out_cap ? c->out_cap : 4096;
        while (cap < c->out_len + n)
            cap *= 2;
        c->out = xrealloc(c->out, cap);
        c->out_cap = cap;
    }
    memcpy(c->out + c->out_len, p, n);
    c->out_len += n;
}

static void mark_dirty(struct worker *w, struct conn *c) {
    if (c->dirty)
        return;
    if (w->ndirty == w->dirty_cap) {
        w->dirty_cap = w->dirty_cap ? w->dirty_cap * 2 : 256;
        w->dirty = xrealloc(w->dirty, w->dirty_cap * sizeof *w->dirty);
    }
    c->dirty = 1;
    w->dirty[w->ndirty++] = c;
}

static void free_conn(struct conn *c) {
    free(c->in);
    free(c->out);
    free(c);
}

/* Closes at once; the memory goes after the end-of-turn flush if the connection is in
 * the dirty list. */
static void close_conn(struct conn *c) {
    close(c->fd);
    c->fd = -1;
    if (!c->dirty)
        free_conn(c);
}

/* Where the head starting at `p` ends (the \r of its final \r\n\r\n), or NULL: a
 * memchr for each line end (glibc's memmem cost 150 ns per request here). */
static char *head_end(char *p, char *end) {
    for (char *q = p + 3; q < end;) {
        char *nl = memchr(q, '\n', end - q);
        if (!nl)
            return NULL;
        if (nl[-1] == '\r' && nl[-2] == '\n' && nl[-3] == '\r')
            return nl - 3;
        q = nl + 2; /* the earliest \n that can end an empty line after this one */
    }
    return NULL;
}

/* Every complete request head in the read buffer gets its response appended. */
static void parse(struct worker *w, struct conn *c) {
    size_t pos = 0;
    for (;;) {
        char *start = c->in + pos;
        char *end = head_end(start, c->in + c->in_len);
        if (!end)
            break;
        /* The target: from the first space to the next one. */
        const char *resp = NOT_FOUND;
        size_t len = sizeof NOT_FOUND - 1;
        char *sp = memchr(start, ' ', end - start);
        if (sp) {
            char *t = sp + 1;
            char *sp2 = memchr(t, ' ', end - t);
            size_t tlen = sp2 ? (size_t)(sp2 - t) : 0;
            for (int i = 0; i < w->nroutes; i++)
                if (w->routes[i].path_len == tlen && memcmp(w->routes[i].path, t, tlen) == 0) {
                    resp = w->routes[i].resp;
                    len = w->routes[i].len;
                    break;
                }
        }
        append(c, resp, len);
        pos = end + 4 - c->in;
    }
    if (pos) {
        memmove(c->in, c->in + pos, c->in_len - pos);
        c->in_len -= pos;
        mark_dirty(w, c);
    }
}

static void on_readable(struct worker *w, struct conn *c, int hup) {
    for (;;) {
        if (c->in_cap - c->in_len < READ_MIN) {
            c->in_cap = c->in_cap ? c->in_cap * 2 : 4096;
            c->in = xrealloc(c->in, c->in_cap);
        }
        size_t room = c->in_cap - c->in_len;
        ssize_t n = read(c->fd, c->in + c->in_len, room);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        if (n <= 0)
            return close_conn(c);
        c->in_len += n;
        parse(w, c);
        if ((size_t)n < room && !hup)
            return; /* drained: the next bytes come with a new edge */
    }
}

static void set_interest(struct worker *w, struct conn *c, int out) {
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | EPOLLET | (out ? EPOLLOUT : 0),
                             .data.ptr = c};
    if (epoll_ctl(w->ep, EPOLL_CTL_MOD, c->fd, &ev) != 0)
        die("epoll_ctl MOD");
    c->want_out = out;
}

/* One write of everything due; EPOLLOUT only while bytes are left behind. */
static void flush(struct worker *w, struct conn *c) {
    while (c->out_off < c->out_len) {
        ssize_t n = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            break;
        if (n < 0)
            return close_conn(c);
        c->out_off += n;
        break;
    }
    if (c->out_off == c->out_len) {
        c->out_off = c->out_len = 0;
        if (c->want_out)
            set_interest(w, c, 0);
    } else if (!c->want_out) {
        set_interest(w, c, 1);
    }
}

static void on_accept(struct worker *w) {
    for (;;) {
        int fd = accept4(w->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            return; /* EAGAIN, or out of descriptors: the next edge retries */
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct conn *c = calloc(1, sizeof *c);
        if (!c)
            die("calloc");
        c->fd = fd;
        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | EPOLLET, .data.ptr = c};
        if (epoll_ctl(w->ep, EPOLL_CTL_ADD, fd, &ev) != 0)
            die("epoll_ctl ADD");
    }
}

static void *run(void *arg) {
    struct worker *w = arg;
    if (w->pin) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(w->id % sysconf(_SC_NPROCESSORS_ONLN), &set);
        pthread_setaffinity_np(pthread_self(), sizeof set, &set);
    }
    for (int i = 0; i < g_nroutes; i++) {
        w->routes[i] = g_routes[i];
        w->routes[i].resp = xrealloc(NULL, g_routes[i].len);
        memcpy(w->routes[i].resp, g_routes[i].resp, g_routes[i].len);
    }
    w->nroutes = g_nroutes;
    w->date_secs = -1;
    w->ep = epoll_create1(EPOLL_CLOEXEC);
    w->lfd = listener(1);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.ptr = NULL};
    if (w->ep < 0 || epoll_ctl(w->ep, EPOLL_CTL_ADD, w->lfd, &ev) != 0)
        die("epoll");
    struct epoll_event events[MAX_EVENTS];
    for (;;) {
        int n = epoll_wait(w->ep, events, MAX_EVENTS, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait");
        }
        refresh_date(w);
        for (int i = 0; i < n; i++) {
            struct conn *c = events[i].data.ptr;
            uint32_t e = events[i].events;
            if (!c) {
                on_accept(w);
                continue;
            }
            if ((e & EPOLLOUT) && c->out_off < c->out_len)
                mark_dirty(w, c);
            if (e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
                on_readable(w, c, e & (EPOLLRDHUP | EPOLLHUP | EPOLLERR));
        }
        for (size_t i = 0; i < w->ndirty; i++) {
            struct conn *c = w->dirty[i];
            c->dirty = 0;
            if (c->fd < 0)
                free_conn(c);
            else
                flush(w, c);
        }
        w->ndirty = 0;
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 4 || (argc - 4) % 2 != 0 || (argc - 4) / 2 > MAX_ROUTES) {
        fprintf(stderr, "usage: %s PORT THREADS PIN PATH FILE [PATH FILE]...\n", argv[0]);
        return 2;
    }
    g_port = atoi(argv[1]);
    int threads = atoi(argv[2]), pin = atoi(argv[3]);
    if (threads < 1)
        threads = 1;
    for (int i = 4; i < argc; i += 2) {
        struct route *r = &g_routes[g_nroutes++];
        r->path = argv[i];
        r->path_len = strlen(argv[i]);
        r->resp = read_file(argv[i + 1], &r->len);
        char *d = memmem(r->resp, r->len, "\r\nDate: ", 8);
        r->date_at = d && (size_t)(d + 8 + 29 - r->resp) <= r->len ? d + 8 - r->resp : -1;
    }
    /* Like webdis-rs: a port another process serves is an error, not a shared port. */
    close(listener(0));
    struct worker *ws = calloc(threads, sizeof *ws);
    pthread_t *tids = calloc(threads, sizeof *tids);
    for (int i = 0; i < threads; i++) {
        ws[i].id = i;
        ws[i].pin = pin;
        if (pthread_create(&tids[i], NULL, run, &ws[i]) != 0)
            die("pthread_create");
    }
    for (int i = 0; i < threads; i++)
        pthread_join(tids[i], NULL);
    return 0;
}
