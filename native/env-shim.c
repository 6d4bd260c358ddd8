/*
 * envbox's `env`: installed on the PATH as `env` (and `envbox`).
 *
 * `env` must behave exactly like coreutils env for anything that is not an envbox command, and
 * cost almost nothing. A compiled shim is the only way to get both: it passes argv[0] through
 * unchanged (coreutils prints it in its messages, and a shebang script never sees the name the
 * user typed), it leaves the environment alone (dash rewrites PWD), and it starts in well under
 * a millisecond. bin/env is the portable fallback used when this is not built.
 *
 * The verb list must match src/commands/index.ts; test/unit/cli/shim.test.ts checks it.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static const char *const verbs[] = {
    ENVBOX_VERBS
    NULL,
};

static int is_verb(const char *arg) {
    for (const char *const *v = verbs; *v; v++)
        if (strcmp(arg, *v) == 0) return 1;
    return 0;
}

/*
 * The shortcut for `env ssh -- CMD…` and `env exec CMD…`: when `env up` left the env's OpenSSH
 * ControlMaster running, it also wrote an index for the Envfile (src/ssh/fast-index.ts describes it and
 * src/core/master.ts writes it). Then this runs the command through the master itself, speaking OpenSSH's
 * mux protocol (PROTOCOL.mux in OpenSSH's sources): no Node, no new SSH login. It builds exactly the
 * command line the ordinary path sends (the Envfile's env: exports, the guest folder matching the current
 * one, each argument quoted) and hands its own stdin/stdout/stderr to the master, so the guest's streams
 * reach the caller directly. Anything it can't be sure of returns to the caller, which starts Node.
 */
#define MUX_MSG_HELLO 0x00000001u
#define MUX_C_NEW_SESSION 0x10000002u
#define MUX_S_PERMISSION_DENIED 0x80000002u
#define MUX_S_FAILURE 0x80000003u
#define MUX_S_EXIT_MESSAGE 0x80000004u
#define MUX_S_SESSION_OPENED 0x80000006u
#define MUX_S_TTY_ALLOC_FAIL 0x80000008u
#define MAX_INDEX 65536
#define MAX_FIELDS 512

struct buf {
    char *data;
    size_t len, cap;
};

static int buf_put(struct buf *b, const void *p, size_t n) {
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n) cap *= 2;
        char *d = realloc(b->data, cap);
        if (!d) return -1;
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

static int buf_str(struct buf *b, const char *s) { return buf_put(b, s, strlen(s)); }

static int buf_u32(struct buf *b, uint32_t v) {
    unsigned char x[4] = {v >> 24, v >> 16, v >> 8, v};
    return buf_put(b, x, 4);
}

static int buf_sshstr(struct buf *b, const char *s, size_t n) { return buf_u32(b, (uint32_t)n) || buf_put(b, s, n); }

/* One argument as the ordinary path quotes it (src/ssh/quote.ts): plain words as they are, the rest in '…'. */
static int quote_word(struct buf *b, const char *w) {
    int plain = *w != '\0';
    for (const char *p = w; *p && plain; p++)
        plain = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || strchr("_@+:,./-", *p);
    if (plain) return buf_str(b, w);
    if (buf_str(b, "'")) return -1;
    for (const char *p = w; *p; p++)
        if (*p == '\'' ? buf_str(b, "'\\''") : buf_put(b, p, 1)) return -1;
    return buf_str(b, "'");
}

/* 64-bit FNV-1a as 16 hex digits: the index file's name (fnv1a64 in src/ssh/fast-index.ts). */
static void fnv1a64(const char *s, char out[17]) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        h ^= *p;
        h *= 0x100000001b3ull;
    }
    snprintf(out, 17, "%016llx", (unsigned long long)h);
}

static int read_full(int fd, void *p, size_t n) {
    for (size_t got = 0; got < n;) {
        ssize_t r = read(fd, (char *)p + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        got += (size_t)r;
    }
    return 0;
}

static int write_full(int fd, const void *p, size_t n) {
    for (size_t put = 0; put < n;) {
        ssize_t w = write(fd, (const char *)p + put, n - put);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        put += (size_t)w;
    }
    return 0;
}

static uint32_t get_u32(const unsigned char *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }

/* One mux message: its type and up to `cap` bytes of what follows the type. */
static int read_msg(int fd, uint32_t *type, unsigned char *body, size_t cap, size_t *len) {
    unsigned char hdr[4];
    if (read_full(fd, hdr, 4)) return -1;
    uint32_t n = get_u32(hdr);
    if (n < 4 || n > 256 * 1024) return -1;
    unsigned char *all = malloc(n);
    if (!all || read_full(fd, all, n)) {
        free(all);
        return -1;
    }
    *type = get_u32(all);
    *len = n - 4 < cap ? n - 4 : cap;
    memcpy(body, all + 4, *len);
    free(all);
    return 0;
}

static int send_msg(int fd, struct buf *body) {
    struct buf m = {0};
    int r = buf_u32(&m, (uint32_t)body->len) || buf_put(&m, body->data, body->len) || write_full(fd, m.data, m.len);
    free(m.data);
    return r;
}

/* mm_send_fd: one byte carrying one descriptor. */
static int send_fd(int sock, int fd) {
    char byte = 0;
    struct iovec iov = {&byte, 1};
    union {
        struct cmsghdr hdr;
        char buf[CMSG_SPACE(sizeof(int))];
    } ctl;
    memset(&ctl, 0, sizeof ctl);
    struct msghdr msg = {0};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = ctl.buf;
    msg.msg_controllen = sizeof ctl.buf;
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof fd);
    for (;;) {
        ssize_t n = sendmsg(sock, &msg, 0);
        if (n == 1) return 0;
        if (n < 0 && errno == EINTR) continue;
        return -1;
    }
}

static int same_stamp(const char *path, char **f) {
    struct stat st;
    if (stat(path, &st)) return 0;
    return strcmp(path, f[0]) == 0 && (long long)st.st_size == atoll(f[1]) && (long long)st.st_mtim.tv_sec == atoll(f[2]) &&
           (long long)st.st_mtim.tv_nsec == atoll(f[3]);
}

/* The Envfile the ordinary path would use (findEnvfile in src/envfile/load.ts), or 0. */
static int find_envfile(const char *cwd, char *out, size_t cap) {
    static const char *const names[] = {"Envfile", "Envfile.yaml", "Envfile.yml"};
    char dir[PATH_MAX];
    if (snprintf(dir, sizeof dir, "%s", cwd) >= (int)sizeof dir) return 0;
    for (;;) {
        for (int i = 0; i < 3; i++) {
            struct stat st;
            if (snprintf(out, cap, "%s/%s", strcmp(dir, "/") ? dir : "", names[i]) >= (int)cap) return 0;
            if (stat(out, &st) == 0) return S_ISREG(st.st_mode);
        }
        char *slash = strrchr(dir, '/');
        if (!slash || strcmp(dir, "/") == 0) return 0;
        if (slash == dir) slash[1] = '\0';
        else *slash = '\0';
    }
}

/* Runs the command and exits with its status, or returns when the ordinary path has to do it. */
static void shortcut(int argc, char **argv) {
    const char *off = getenv("ENVBOX_NO_SHORTCUT");
    if ((off && *off && strcmp(off, "0")) || getenv("ENVBOX_ENVFILE")) return;
    if (argc < 3 || (strcmp(argv[1], "ssh") && strcmp(argv[1], "exec"))) return;
    int first = strcmp(argv[2], "--") == 0 ? 3 : 2;
    if (first >= argc) return;
    /* Without `--`, anything that looks like a flag is the CLI's to parse. */
    if (first == 2)
        for (int i = 2; i < argc; i++)
            if (argv[i][0] == '-') return;
    for (int fd = 0; fd <= 2; fd++)
        if (fcntl(fd, F_GETFD) < 0) return;

    char cwd[PATH_MAX], envfile[PATH_MAX], real[PATH_MAX], index[PATH_MAX], hash[17];
    if (!getcwd(cwd, sizeof cwd) || !find_envfile(cwd, envfile, sizeof envfile) || !realpath(envfile, real)) return;
    const char *xdg = getenv("XDG_STATE_HOME"), *home = getenv("HOME");
    fnv1a64(real, hash);
    int n = xdg && *xdg ? snprintf(index, sizeof index, "%s/envbox/fast/%s", xdg, hash)
            : home && *home ? snprintf(index, sizeof index, "%s/.local/state/envbox/fast/%s", home, hash)
                           : -1;
    if (n < 0 || n >= (int)sizeof index) return;

    int fd = open(index, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return;
    struct stat st;
    static char data[MAX_INDEX + 1];
    if (fstat(fd, &st) || !S_ISREG(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 022) || st.st_size > MAX_INDEX ||
        read_full(fd, data, (size_t)st.st_size)) {
        close(fd);
        return;
    }
    close(fd);
    char *f[MAX_FIELDS];
    int nf = 0;
    for (char *p = data, *end = data + st.st_size; p < end && nf < MAX_FIELDS;) {
        char *z = memchr(p, '\0', (size_t)(end - p));
        if (!z) return;
        f[nf++] = p;
        p = z + 1;
    }
    if (nf < 12 || strcmp(f[0], "envbox-fast-1")) return;
    int folders = atoi(f[11]);
    if (folders < 0 || nf != 12 + 2 * folders) return;
    if (!same_stamp(real, f + 1) || !same_stamp(f[5], f + 5)) return;

    /* The guest folder matching this one (guestCwd in src/core/run.ts). */
    struct buf cmd = {0};
    int bad = buf_str(&cmd, f[10]);
    for (int i = 0; i < folders; i++) {
        const char *host = f[12 + 2 * i], *guest = f[13 + 2 * i];
        size_t hl = strlen(host);
        const char *rel;
        if (strcmp(cwd, host) == 0) rel = "";
        else if (strcmp(host, "/") == 0) rel = cwd + 1;
        else if (strncmp(cwd, host, hl) == 0 && cwd[hl] == '/') rel = cwd + hl + 1;
        else continue;
        if (strncmp(rel, "..", 2) == 0) continue;
        struct buf dir = {0};
        bad |= buf_str(&dir, guest) || (*rel && (buf_str(&dir, "/") || buf_str(&dir, rel))) || buf_put(&dir, "", 1);
        bad |= bad || buf_str(&cmd, "cd ") || quote_word(&cmd, dir.data) || buf_str(&cmd, " 2>/dev/null; ");
        free(dir.data);
        break;
    }
    for (int i = first; i < argc; i++) bad |= (i > first && buf_str(&cmd, " ")) || quote_word(&cmd, argv[i]);
    if (bad) return;

    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (strlen(f[9]) >= sizeof addr.sun_path) return;
    strcpy(addr.sun_path, f[9]);
    int sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (sock < 0) return;
    if (connect(sock, (struct sockaddr *)&addr, sizeof addr)) {
        close(sock);
        return;
    }
    struct buf hello = {0}, req = {0};
    uint32_t type;
    unsigned char body[512];
    size_t len;
    if (buf_u32(&hello, MUX_MSG_HELLO) || buf_u32(&hello, 4) || send_msg(sock, &hello) ||
        read_msg(sock, &type, body, sizeof body, &len) || type != MUX_MSG_HELLO) {
        close(sock);
        return;
    }
    /* id, reserved, no tty, no X11, no agent, not a subsystem, no escape character, no TERM, the command. */
    if (buf_u32(&req, MUX_C_NEW_SESSION) || buf_u32(&req, 1) || buf_sshstr(&req, "", 0) || buf_u32(&req, 0) || buf_u32(&req, 0) ||
        buf_u32(&req, 0) || buf_u32(&req, 0) || buf_u32(&req, 0xffffffffu) || buf_sshstr(&req, "", 0) ||
        buf_sshstr(&req, cmd.data, cmd.len) || send_msg(sock, &req) || send_fd(sock, 0) || send_fd(sock, 1) || send_fd(sock, 2) ||
        read_msg(sock, &type, body, sizeof body, &len) || type != MUX_S_SESSION_OPENED) {
        /* Refused before anything ran in the guest: the ordinary path can still do it (and explain). */
        close(sock);
        return;
    }
    /* From here the command runs: its streams are the master's business, its exit status ours. The master
     * sends the status as soon as the guest does, and closes this socket once it has written the last of
     * the command's output: only then is everything on our stdout and stderr. */
    int status = -1;
    while (read_msg(sock, &type, body, sizeof body, &len) == 0)
        if (type == MUX_S_EXIT_MESSAGE && len >= 8) status = (int)(get_u32(body + 4) & 0xff);
    if (status >= 0) exit(status);
    fprintf(stderr, "envbox: the guest command ended without an exit status (killed by a signal, or the connection to the guest was lost)\n");
    exit(255);
}

int main(int argc, char **argv) {
    const char *name = strrchr(argv[0], '/');
    name = name ? name + 1 : argv[0];
    int ours = strcmp(name, "envbox") == 0 || (argc > 1 && is_verb(argv[1]));

    if (!ours) {
        execv("/usr/bin/env", argv);
        execv("/bin/env", argv);
        fprintf(stderr, "envbox: cannot run the system env (/usr/bin/env): %s\n", strerror(errno));
        return 127;
    }

    shortcut(argc, argv);

    /* This binary lives at <package>/native/build/env-shim; the CLI at <package>/dist/cli.js. */
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n < 0) {
        perror("envbox: readlink /proc/self/exe");
        return 1;
    }
    self[n] = '\0';
    for (int up = 0; up < 3; up++) {
        char *slash = strrchr(self, '/');
        if (!slash) break;
        *slash = '\0';
    }
    char cli[PATH_MAX];
    if (snprintf(cli, sizeof cli, "%s/dist/cli.js", self) >= (int)sizeof cli) {
        fprintf(stderr, "envbox: install path too long\n");
        return 1;
    }

    /* Node reads and parses NODE_EXTRA_CA_CERTS while it starts (tens of ms on every command), though the
     * CLI itself never uses the default CA store (its one TLS client pins the server's certificate). The
     * setting is handed over under another name; cli.js puts it back before anything it runs can see it. */
    const char *ca = getenv("NODE_EXTRA_CA_CERTS");
    if (ca) {
        if (setenv("ENVBOX_NODE_EXTRA_CA_CERTS", ca, 1) == 0) unsetenv("NODE_EXTRA_CA_CERTS");
    }

    char **args = calloc((size_t)argc + 2, sizeof *args);
    if (!args) return 1;
    args[0] = "node";
    args[1] = cli;
    for (int i = 1; i < argc; i++) args[i + 1] = argv[i];
    execvp("node", args);
    fprintf(stderr, "envbox: cannot run node: %s\n", strerror(errno));
    return 127;
}
