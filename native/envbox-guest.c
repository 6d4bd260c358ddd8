/*
 * envbox-guest: the small static helper envbox runs inside a VM guest, over an SSH exec channel.
 *
 *   envbox-guest serve [--watch] ROOT...   frames on stdin/stdout (src/guest/protocol.ts is the host side)
 *   envbox-guest --version                 prints "envbox-guest 1"
 *
 * It replays host file events on shared folders (EVENTS) so guest inotify watchers react, and applies
 * sync-mode changes (WRITE/WRITE_T/MKDIR/SYMLINK/REMOVE/RENAME/CHMOD) and listings (LIST) beneath its
 * roots. WRITE_T is a WRITE that also sets the file's mtime; HELLO's feature bit 2 says it is understood.
 *
 * Frame: u32 len (big-endian, bytes after it) | u8 op | u32 id | payload. Strings are u16 len + bytes.
 * Every path is resolved beneath its root: the parent with openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS),
 * the final component never followed. A framing error ends the helper with exit code 2 and no more output.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#define PROTO_VERSION 1
#define MAX_FRAME (1024 * 1024 + 64 * 1024)
#define MAX_ROOTS 64
#define MAX_PATH_LEN 4095
#define ECHO_NS (2LL * 1000 * 1000 * 1000)
/* Past ECHO_NS, a path the guest changed is still its own while it looks as the guest left it. */
#define OWN_NS (60LL * 1000 * 1000 * 1000)
#define TMP_PREFIX ".envbox-tmp-"

enum {
  OP_HELLO = 0x01, OP_EVENTS = 0x02, OP_WRITE = 0x10, OP_APPEND = 0x11, OP_MKDIR = 0x12, OP_SYMLINK = 0x13,
  OP_REMOVE = 0x14, OP_RENAME = 0x15, OP_CHMOD = 0x16, OP_LIST = 0x17, OP_WRITE_T = 0x18, OP_PING = 0x20,
  OP_OK = 0x80, OP_ERR = 0x81,
};
/* HELLO's feature bits: --watch is on; WRITE_T (a WRITE that also sets the file's mtime) is understood. */
#define FEATURE_WATCH 1u
#define FEATURE_MTIME 2u
enum { EV_MODIFY = 1, EV_CREATE = 2, EV_MKDIR = 3, EV_DELETE = 4, EV_RENAME = 5, EV_RESCAN = 6 };

static int root_fd[MAX_ROOTS];
static int root_count;
static int watching;

/* ---------- output ---------- */

static unsigned char *out;
static size_t out_len, out_cap;

static void die_io(const char *what) {
  fprintf(stderr, "envbox-guest: %s: %s\n", what, strerror(errno));
  exit(2);
}

static void out_need(size_t n) {
  if (out_len + n <= out_cap) return;
  size_t cap = out_cap ? out_cap : 65536;
  while (cap < out_len + n) cap *= 2;
  unsigned char *p = realloc(out, cap);
  if (!p) die_io("out of memory");
  out = p;
  out_cap = cap;
}
static void put_u8(unsigned v) { out_need(1); out[out_len++] = (unsigned char)v; }
static void put_u16(unsigned v) { put_u8(v >> 8); put_u8(v & 0xff); }
static void put_u32(uint32_t v) { put_u16(v >> 16); put_u16(v & 0xffff); }
static void put_u64(uint64_t v) { put_u32((uint32_t)(v >> 32)); put_u32((uint32_t)v); }
static void put_str(const char *s, size_t n) {
  if (n > 0xffff) n = 0xffff;
  put_u16((unsigned)n);
  out_need(n);
  memcpy(out + out_len, s, n);
  out_len += n;
}

/* A reply is built in place after a 9-byte header that reply_end fills in. */
static size_t reply_start;
static void reply_begin(unsigned op, uint32_t id) {
  reply_start = out_len;
  put_u32(0);
  put_u8(op);
  put_u32(id);
}
static void reply_end(void) {
  uint32_t len = (uint32_t)(out_len - reply_start - 4);
  out[reply_start] = len >> 24;
  out[reply_start + 1] = len >> 16;
  out[reply_start + 2] = len >> 8;
  out[reply_start + 3] = len;
}
static void flush_out(void) {
  size_t off = 0;
  while (off < out_len) {
    ssize_t n = write(1, out + off, out_len - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) die_io("write to host");
    off += (size_t)n;
  }
  out_len = 0;
}
static void reply_ok_empty(uint32_t id) { reply_begin(OP_OK, id); reply_end(); }
static void reply_err(uint32_t id, int err, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  reply_begin(OP_ERR, id);
  put_u32((uint32_t)err);
  put_str(msg, strlen(msg));
  reply_end();
}

/* ---------- input ---------- */

static unsigned char inbuf[65536];
static size_t in_pos, in_end;
static int watch_fd = -1;
static void watch_drain(void);

/* Fills the input buffer; while idle, also drains the guest's own inotify events (--watch). */
static int fill_in(void) {
  if (in_pos == in_end) in_pos = in_end = 0;
  for (;;) {
    if (watch_fd >= 0) {
      struct pollfd p[2] = {{.fd = 0, .events = POLLIN}, {.fd = watch_fd, .events = POLLIN}};
      if (poll(p, 2, -1) < 0) {
        if (errno == EINTR) continue;
        die_io("poll");
      }
      if (p[1].revents & POLLIN) watch_drain();
      if (!(p[0].revents & (POLLIN | POLLHUP | POLLERR))) continue;
    }
    ssize_t n = read(0, inbuf + in_end, sizeof inbuf - in_end);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) die_io("read from host");
    in_end += (size_t)n;
    return n > 0;
  }
}

/* Reads exactly n bytes; eof_ok says whether end of input before the first byte is a clean end. */
static int read_exact(unsigned char *dst, size_t n, int eof_ok) {
  size_t got = 0;
  while (got < n) {
    if (in_pos == in_end && !fill_in()) {
      if (got == 0 && eof_ok) return 0;
      fprintf(stderr, "envbox-guest: input ended inside a frame\n");
      exit(2);
    }
    size_t take = in_end - in_pos < n - got ? in_end - in_pos : n - got;
    memcpy(dst + got, inbuf + in_pos, take);
    in_pos += take;
    got += take;
  }
  return 1;
}

struct frame {
  unsigned op;
  uint32_t id;
  unsigned char *p; /* payload */
  size_t n, off;
  int bad; /* a field ran past the end */
};
static unsigned char frame_buf[MAX_FRAME];

static int read_frame(struct frame *f) {
  unsigned char h[4];
  if (!read_exact(h, 4, 1)) return 0;
  uint32_t len = (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3];
  if (len < 5 || len > MAX_FRAME) {
    fprintf(stderr, "envbox-guest: bad frame length %u\n", len);
    exit(2);
  }
  read_exact(frame_buf, len, 0);
  f->op = frame_buf[0];
  f->id = (uint32_t)frame_buf[1] << 24 | (uint32_t)frame_buf[2] << 16 | (uint32_t)frame_buf[3] << 8 | frame_buf[4];
  f->p = frame_buf + 5;
  f->n = len - 5;
  f->off = 0;
  f->bad = 0;
  return 1;
}

static unsigned get_u8(struct frame *f) {
  if (f->bad || f->n - f->off < 1) return f->bad = 1, 0;
  return f->p[f->off++];
}
static unsigned get_u16(struct frame *f) { unsigned a = get_u8(f); return a << 8 | get_u8(f); }
static uint32_t get_u32(struct frame *f) { uint32_t a = get_u16(f); return a << 16 | get_u16(f); }
static uint64_t get_u64(struct frame *f) { uint64_t a = get_u32(f); return a << 32 | get_u32(f); }
/* A string copied out NUL-terminated into dst (cap bytes); too long or containing NUL marks the frame bad. */
static void get_str(struct frame *f, char *dst, size_t cap) {
  size_t n = get_u16(f);
  dst[0] = 0;
  if (f->bad || f->n - f->off < n || n >= cap || memchr(f->p + f->off, 0, n)) {
    f->bad = 1;
    return;
  }
  memcpy(dst, f->p + f->off, n);
  dst[n] = 0;
  f->off += n;
}

/* ---------- paths ---------- */

static long do_openat2(int dirfd, const char *path, int flags, unsigned long long resolve) {
  struct open_how how = {.flags = (unsigned long long)flags | O_CLOEXEC, .mode = 0, .resolve = resolve};
  long fd;
  do fd = syscall(SYS_openat2, dirfd, path, &how, sizeof how);
  while (fd < 0 && errno == EAGAIN);
  return fd;
}
#define BENEATH (RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)

/* Relative, '/'-separated, no empty, "." or ".." components; "" only where allow_empty (the root). */
static int path_ok(const char *p, int allow_empty) {
  if (!*p) return allow_empty;
  if (p[0] == '/') return 0;
  for (const char *c = p; *c;) {
    const char *e = strchr(c, '/');
    size_t n = e ? (size_t)(e - c) : strlen(c);
    if (n == 0 || (n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.')) return 0;
    if (!e) break;
    c = e + 1;
    if (!*c) return 0; /* trailing slash */
  }
  return 1;
}

/* Opens the folder that holds path's last component (O_PATH) and points *name at that component.
 * create: make missing parent folders (mode 0755) one component at a time. Returns fd or -errno. */
static int open_parent(int root, const char *path, const char **name, int create) {
  const char *slash = strrchr(path, '/');
  *name = slash ? slash + 1 : path;
  if (!slash) {
    long fd = do_openat2(root_fd[root], ".", O_PATH | O_DIRECTORY, BENEATH);
    return fd >= 0 ? (int)fd : -errno;
  }
  char dir[MAX_PATH_LEN + 1];
  size_t dn = (size_t)(slash - path);
  memcpy(dir, path, dn);
  dir[dn] = 0;
  long fd = do_openat2(root_fd[root], dir, O_PATH | O_DIRECTORY, BENEATH);
  if (fd >= 0 || !create || errno != ENOENT) return fd >= 0 ? (int)fd : -errno;
  int cur = (int)do_openat2(root_fd[root], ".", O_PATH | O_DIRECTORY, BENEATH);
  if (cur < 0) return -errno;
  for (char *c = dir; c && *c;) {
    char *e = strchr(c, '/');
    if (e) *e = 0;
    long next = do_openat2(cur, c, O_PATH | O_DIRECTORY, BENEATH);
    if (next < 0 && errno == ENOENT) {
      if (mkdirat(cur, c, 0755) < 0 && errno != EEXIST) {
        int err = errno;
        close(cur);
        return -err;
      }
      next = do_openat2(cur, c, O_PATH | O_DIRECTORY, BENEATH);
    }
    int err = errno;
    close(cur);
    if (next < 0) return -err;
    cur = (int)next;
    c = e ? e + 1 : NULL;
  }
  return cur;
}

/* Temp names in the target's own folder, so the final rename is atomic and on the same filesystem. */
static void tmp_name(char *dst, size_t cap) {
  static uint64_t seq;
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  uint64_t x = (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 20) ^ (++seq * 0x9e3779b97f4a7c15ULL);
  static const char al[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  char s[7];
  for (int i = 0; i < 6; i++, x /= 62) s[i] = al[x % 62];
  s[6] = 0;
  snprintf(dst, cap, TMP_PREFIX "%s", s);
}

/* Recursive delete of name in dirfd, never following symlinks. */
static int remove_tree(int dirfd, const char *name) {
  if (unlinkat(dirfd, name, 0) == 0 || errno == ENOENT) return 0;
  if (errno != EISDIR && errno != EPERM) return -errno;
  int fd = (int)do_openat2(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, BENEATH);
  if (fd < 0) return errno == ENOENT ? 0 : -errno;
  DIR *d = fdopendir(fd);
  if (!d) {
    int err = errno;
    close(fd);
    return -err;
  }
  int rc = 0;
  struct dirent *e;
  while (rc == 0 && (e = readdir(d))) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    rc = remove_tree(fd, e->d_name);
  }
  closedir(d);
  if (rc) return rc;
  return unlinkat(dirfd, name, AT_REMOVEDIR) == 0 || errno == ENOENT ? 0 : -errno;
}

/* chmod of name in dirfd without following a symlink there; a symlink itself is left alone (Linux has no
 * symlink modes). Goes through the O_PATH fd's /proc entry so a swapped-in symlink is never followed. */
static int chmod_nofollow(int dirfd, const char *name, mode_t mode) {
  int fd = (int)do_openat2(dirfd, name, O_PATH | O_NOFOLLOW, BENEATH);
  if (fd < 0) return -errno;
  struct stat st;
  int rc = 0;
  if (fstat(fd, &st) < 0) rc = -errno;
  else if (!S_ISLNK(st.st_mode) && (st.st_mode & 07777) != mode) {
    char proc[64];
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
    if (chmod(proc, mode) < 0) rc = -errno;
  }
  close(fd);
  return rc;
}

/* ---------- pinned folders ----------
 * On a 9p mount without a dentry cache (cache=none/mmap, as envbox mounts folders) the guest kernel drops
 * a folder's dentry as soon as nobody uses it, and the next lookup may make a new inode (its qid version
 * changed when the host changed the folder). An inotify watch sits on the old inode and never hears of
 * anything again: guest watchers go deaf in every subfolder the host has touched. Holding an O_PATH fd on
 * every folder beneath the roots keeps one dentry and one inode per folder, for the watchers and for us. */

#define MAX_PINS 200000
struct pin { int root; int fd; char *path; };
static struct pin *pins;
static size_t npins, cappins;

static int pin_find(int root, const char *rel) {
  for (size_t i = 0; i < npins; i++)
    if (pins[i].root == root && !strcmp(pins[i].path, rel)) return (int)i;
  return -1;
}

/* Pins rel and every folder below it (not following symlinks). */
static void pin_tree(int root, const char *rel) {
  int idx = pin_find(root, rel), fd;
  if (idx >= 0) fd = pins[idx].fd;
  else {
    if (npins >= MAX_PINS) return;
    fd = (int)do_openat2(root_fd[root], *rel ? rel : ".", O_PATH | O_DIRECTORY | O_NOFOLLOW, BENEATH);
    if (fd < 0) return;
    if (npins == cappins) {
      cappins = cappins ? cappins * 2 : 256;
      pins = realloc(pins, cappins * sizeof *pins);
      if (!pins) die_io("out of memory");
    }
    pins[npins].root = root;
    pins[npins].fd = fd;
    pins[npins].path = strdup(rel);
    if (!pins[npins].path) die_io("out of memory");
    npins++;
  }
  int rd = (int)do_openat2(fd, ".", O_RDONLY | O_DIRECTORY, BENEATH);
  DIR *d = rd >= 0 ? fdopendir(rd) : NULL;
  if (!d) {
    if (rd >= 0) close(rd);
    return;
  }
  struct dirent *e;
  while ((e = readdir(d))) {
    if (e->d_type != DT_DIR || !strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    char sub[MAX_PATH_LEN + 1];
    if ((size_t)snprintf(sub, sizeof sub, "%s%s%s", rel, *rel ? "/" : "", e->d_name) < sizeof sub) pin_tree(root, sub);
  }
  closedir(d);
}

/* Lets go of rel and everything below it (it is gone or moved on the host). */
static void unpin_tree(int root, const char *rel) {
  size_t n = strlen(rel), k = 0;
  for (size_t i = 0; i < npins; i++) {
    const char *p = pins[i].path;
    if (pins[i].root == root && *rel && !strncmp(p, rel, n) && (p[n] == 0 || p[n] == '/')) {
      close(pins[i].fd);
      free(pins[i].path);
    } else pins[k++] = pins[i];
  }
  npins = k;
}

/* Pins the folders along path (after mkdir -p made some of them). */
static void pin_parents(int root, const char *path, int include_last) {
  char buf[MAX_PATH_LEN + 1];
  snprintf(buf, sizeof buf, "%s", path);
  for (char *c = buf; (c = strchr(c, '/')); c++) {
    *c = 0;
    if (pin_find(root, buf) < 0) pin_tree(root, buf);
    *c = '/';
  }
  if (include_last && pin_find(root, buf) < 0) pin_tree(root, buf);
}

static int is_dir_at(int dirfd, const char *name) {
  struct stat st;
  return fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
}

/* ---------- --watch: the guest's own changes, for echo suppression ---------- */

struct watch { int wd; char *path; };
static struct watch *watches;
static size_t nwatches, capwatches;
struct recent { char *key; int64_t at; int seen; int64_t mtime, size; };
static struct recent *recents;
static size_t nrecents, caprecents;
static int skipping_own; /* our own operations make events too: set while draining those */

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* The path's modification time and size as the guest sees them now; 0 when it can't be looked at. */
static int fingerprint(int root, const char *rel, int64_t *mtime, int64_t *size) {
  int fd = (int)do_openat2(root_fd[root], *rel ? rel : ".", O_PATH | O_NOFOLLOW, BENEATH);
  if (fd < 0) return 0;
  struct stat st;
  int ok = fstat(fd, &st) == 0;
  close(fd);
  if (ok) {
    *mtime = (int64_t)st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec;
    *size = (int64_t)st.st_size;
  }
  return ok;
}

static void remember(const char *key, int root, const char *rel) {
  int64_t t = now_ns();
  struct recent *r = NULL;
  for (size_t i = 0; i < nrecents && !r; i++)
    if (!strcmp(recents[i].key, key)) r = &recents[i];
  if (!r) {
    /* prune old entries before growing */
    size_t k = 0;
    for (size_t i = 0; i < nrecents; i++) {
      if (t - recents[i].at < OWN_NS) recents[k++] = recents[i];
      else free(recents[i].key);
    }
    nrecents = k;
    if (nrecents == caprecents) {
      caprecents = caprecents ? caprecents * 2 : 64;
      recents = realloc(recents, caprecents * sizeof *recents);
      if (!recents) die_io("out of memory");
    }
    r = &recents[nrecents++];
    r->key = strdup(key);
    if (!r->key) die_io("out of memory");
  }
  r->at = t;
  r->seen = fingerprint(root, rel, &r->mtime, &r->size);
}
/* The guest changed the path within ECHO_NS, or within OWN_NS and nothing has changed it since (the
 * host's watcher, or a later `env sync --wait` rescan, may report a guest write seconds after it). */
static int recently_changed(int root, const char *path) {
  char key[MAX_PATH_LEN + 8];
  snprintf(key, sizeof key, "%d:%s", root, path);
  int64_t t = now_ns();
  for (size_t i = 0; i < nrecents; i++) {
    if (strcmp(recents[i].key, key)) continue;
    if (t - recents[i].at < ECHO_NS) return 1;
    int64_t mtime, size;
    return t - recents[i].at < OWN_NS && recents[i].seen && fingerprint(root, path, &mtime, &size) && mtime == recents[i].mtime && size == recents[i].size;
  }
  return 0;
}

static void watch_add(int root, const char *rel) {
  char full[MAX_PATH_LEN + 1];
  int fd = (int)do_openat2(root_fd[root], *rel ? rel : ".", O_PATH | O_DIRECTORY, BENEATH);
  if (fd < 0) return;
  snprintf(full, sizeof full, "/proc/self/fd/%d", fd);
  int wd = inotify_add_watch(watch_fd, full, IN_CREATE | IN_MODIFY | IN_ATTRIB | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_CLOSE_WRITE | IN_ONLYDIR);
  if (wd >= 0) {
    size_t i = 0;
    while (i < nwatches && watches[i].wd != wd) i++;
    if (i == nwatches) {
      if (nwatches == capwatches) {
        capwatches = capwatches ? capwatches * 2 : 64;
        watches = realloc(watches, capwatches * sizeof *watches);
        if (!watches) die_io("out of memory");
      }
      nwatches++;
    } else free(watches[i].path);
    watches[i].wd = wd;
    if (asprintf(&watches[i].path, "%d:%s", root, rel) < 0) die_io("out of memory");
    DIR *d = fdopendir((int)do_openat2(fd, ".", O_RDONLY | O_DIRECTORY, BENEATH));
    if (d) {
      struct dirent *e;
      while ((e = readdir(d))) {
        if (e->d_type != DT_DIR || !strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char sub[MAX_PATH_LEN + 1];
        if ((size_t)snprintf(sub, sizeof sub, "%s%s%s", rel, *rel ? "/" : "", e->d_name) < sizeof sub) watch_add(root, sub);
      }
      closedir(d);
    }
  }
  close(fd);
}

static void watch_drain(void) {
  char buf[65536] __attribute__((aligned(__alignof__(struct inotify_event))));
  for (;;) {
    ssize_t n = read(watch_fd, buf, sizeof buf);
    if (n <= 0) return;
    for (char *p = buf; p < buf + n;) {
      struct inotify_event *ev = (struct inotify_event *)p;
      p += sizeof *ev + ev->len;
      if (skipping_own || !ev->len || !strncmp(ev->name, TMP_PREFIX, strlen(TMP_PREFIX))) continue;
      for (size_t i = 0; i < nwatches; i++) {
        if (watches[i].wd != ev->wd) continue;
        char key[MAX_PATH_LEN + 8];
        const char *dir = strchr(watches[i].path, ':') + 1;
        if ((size_t)snprintf(key, sizeof key, "%s%s%s", watches[i].path, *dir ? "/" : "", ev->name) >= sizeof key) break;
        int root = atoi(watches[i].path);
        const char *rel = strchr(key, ':') + 1;
        remember(key, root, rel);
        if ((ev->mask & IN_ISDIR) && (ev->mask & (IN_CREATE | IN_MOVED_TO))) {
          pin_tree(root, rel); /* before guest watchers look it up again (see pinned folders) */
          watch_add(root, rel);
        }
        break;
      }
    }
  }
}

/* Drains events our own operations caused, so they never count as guest changes. Our operations are
 * synchronous, so their events are queued by the time the syscalls return. */
static void watch_skip_own(void) {
  if (watch_fd < 0) return;
  skipping_own = 1;
  watch_drain();
  skipping_own = 0;
}

/* ---------- EVENTS replay ---------- */

/* Renames name away to a temp name and back: guest watchers see IN_MOVED_FROM/IN_MOVED_TO for name, which
 * inotifywait -r, watchdog and chokidar all take as the path (re)appearing, and for a folder as a new
 * folder to watch and scan. Content, mode and times are untouched; the host path is missing for two
 * round trips of the shared filesystem. */
static int move_away_and_back(int dirfd, const char *name) {
  char tmp[32];
  tmp_name(tmp, sizeof tmp);
  if (renameat(dirfd, name, dirfd, tmp) < 0) return -errno;
  if (renameat(dirfd, tmp, dirfd, name) < 0) {
    int err = errno;
    fprintf(stderr, "envbox-guest: could not move %s back from %s: %s\n", name, tmp, strerror(err));
    return -err;
  }
  return 0;
}

/* Creates and at once removes a file: IN_CREATE + IN_DELETE for name in this folder. O_EXCL never touches a
 * path that exists again. */
static int ghost(int dirfd, const char *name) {
  int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) return -errno;
  close(fd);
  return unlinkat(dirfd, name, 0) < 0 ? -errno : 0;
}

static int replay_one(int root, unsigned kind, const char *path, const char *to) {
  const char *name;
  int dirfd = open_parent(root, path, &name, 0);
  if (dirfd < 0) return dirfd;
  struct stat st;
  int rc = 0;
  switch (kind) {
  case EV_MODIFY: {
    /* Setting mtime alone, to its own value, is an IN_MODIFY (fsnotify_change: ATTR_MTIME without ATTR_ATIME). */
    if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) { rc = -errno; break; }
    if (!S_ISREG(st.st_mode)) { rc = -EINVAL; break; }
    struct timespec ts[2] = {{.tv_nsec = UTIME_OMIT}, st.st_mtim};
    if (utimensat(dirfd, name, ts, AT_SYMLINK_NOFOLLOW) < 0) {
      /* Not the owner: open for writing and close (IN_CLOSE_WRITE) is the most that is allowed. */
      int fd = openat(dirfd, name, O_WRONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
      if (fd < 0) rc = -errno;
      else close(fd);
    }
    break;
  }
  case EV_CREATE:
  case EV_MKDIR:
    if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) { rc = -errno; break; }
    if (S_ISDIR(st.st_mode)) pin_tree(root, path); /* before watchers look it up */
    rc = move_away_and_back(dirfd, name);
    break;
  case EV_DELETE:
    /* The host has removed it; the guest kernel only emits IN_DELETE for a removal it does itself. */
    unpin_tree(root, path);
    rc = ghost(dirfd, name);
    break;
  case EV_RENAME: {
    const char *to_name;
    int to_fd = open_parent(root, to, &to_name, 0);
    if (to_fd < 0) { rc = to_fd; break; }
    unpin_tree(root, path);
    struct stat from_st;
    if (fstatat(to_fd, to_name, &st, AT_SYMLINK_NOFOLLOW) < 0) rc = -errno;
    else if (fstatat(dirfd, name, &from_st, AT_SYMLINK_NOFOLLOW) == 0) rc = -EEXIST; /* the host made `from` again */
    if (rc == 0 && S_ISDIR(st.st_mode)) {
      /* A folder: watchers still watch the inode the guest knew as `from`, which 9p will never use again.
       * A move back and forth would hand them that dead watch under the new name; instead `from` goes away
       * (short-lived entry) and `to` arrives as a folder they don't know, which they watch afresh. */
      pin_tree(root, to);
      rc = ghost(dirfd, name);
      if (rc == 0) rc = move_away_and_back(to_fd, to_name);
    } else if (rc == 0) {
      /* A file: move it back to where it was and forward again; the last pair is a real from → to move. */
      if (renameat(to_fd, to_name, dirfd, name) < 0) rc = -errno;
      else if (renameat(dirfd, name, to_fd, to_name) < 0) {
        rc = -errno;
        fprintf(stderr, "envbox-guest: could not move %s back to %s: %s\n", path, to, strerror(-rc));
      }
    }
    close(to_fd);
    break;
  }
  case EV_RESCAN:
    if (*path) {
      if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) { rc = -errno; break; }
      if (S_ISDIR(st.st_mode)) pin_tree(root, path);
      rc = move_away_and_back(dirfd, name);
    } else {
      /* The root itself can't be moved: a ghost entry makes watchers on it look again. */
      char tmp[32];
      tmp_name(tmp, sizeof tmp);
      pin_tree(root, "");
      rc = ghost(dirfd, tmp);
    }
    break;
  default:
    rc = -EINVAL;
  }
  close(dirfd);
  return rc;
}

static void op_events(struct frame *f) {
  unsigned root = get_u8(f), count = get_u16(f), failed = 0;
  if (f->bad) { reply_err(f->id, EINVAL, "EVENTS: truncated header"); return; }
  if (root >= (unsigned)root_count) { reply_err(f->id, EINVAL, "EVENTS: no root %u (have %d)", root, root_count); return; }
  /* Validate the whole batch before touching anything: a malformed batch changes nothing. */
  size_t start = f->off;
  char path[MAX_PATH_LEN + 1], to[MAX_PATH_LEN + 1];
  for (unsigned i = 0; i < count; i++) {
    unsigned kind = get_u8(f);
    get_str(f, path, sizeof path);
    if (kind == EV_RENAME) get_str(f, to, sizeof to);
    if (f->bad) { reply_err(f->id, EINVAL, "EVENTS: entry %u is truncated or too long", i); return; }
    if (kind < EV_MODIFY || kind > EV_RESCAN) { reply_err(f->id, EINVAL, "EVENTS: entry %u has unknown kind %u", i, kind); return; }
    if (!path_ok(path, kind == EV_RESCAN) || (kind == EV_RENAME && !path_ok(to, 0))) {
      reply_err(f->id, EINVAL, "EVENTS: entry %u: path must be relative, without '..', '.' or empty parts", i);
      return;
    }
  }
  if (f->off != f->n) { reply_err(f->id, EINVAL, "EVENTS: %zu bytes after the last entry", f->n - f->off); return; }
  if (watch_fd >= 0) watch_drain();
  f->off = start;
  for (unsigned i = 0; i < count; i++) {
    unsigned kind = get_u8(f);
    get_str(f, path, sizeof path);
    if (kind == EV_RENAME) get_str(f, to, sizeof to);
    if (watch_fd >= 0 && (recently_changed((int)root, path) || (kind == EV_RENAME && recently_changed((int)root, to)))) continue;
    int rc = replay_one((int)root, kind, path, kind == EV_RENAME ? to : NULL);
    if (rc < 0) {
      failed++;
      if (rc != -ENOENT && rc != -EEXIST) fprintf(stderr, "envbox-guest: replay %u %s: %s\n", kind, path, strerror(-rc));
    }
  }
  watch_skip_own();
  reply_begin(OP_OK, f->id);
  put_u16(failed);
  reply_end();
}

/* ---------- sync operations ---------- */

/* Common prologue: root index and a path, checked. Returns the root or -1 after replying. */
static int get_root_path(struct frame *f, const char *op, char *path, int allow_empty) {
  unsigned root = get_u8(f);
  get_str(f, path, MAX_PATH_LEN + 1);
  if (f->bad) { reply_err(f->id, EINVAL, "%s: truncated frame or path longer than %d bytes", op, MAX_PATH_LEN); return -1; }
  if (root >= (unsigned)root_count) { reply_err(f->id, EINVAL, "%s: no root %u (have %d)", op, root, root_count); return -1; }
  if (!path_ok(path, allow_empty)) {
    reply_err(f->id, EINVAL, "%s: path '%s' must be relative, without '..', '.' or empty parts", op, path);
    return -1;
  }
  return (int)root;
}

static void reply_errno(uint32_t id, int err, const char *op, const char *path) {
  const char *why = err == EXDEV ? " (it leads outside the folder)" : err == ELOOP ? " (a symlink is in the way)" : "";
  reply_err(id, err, "%s %s: %s%s", op, path, strerror(err), why);
}

static int write_all(int fd, const unsigned char *p, size_t n) {
  while (n) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return -errno;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

/* The temp file of a WRITE in progress, removed if the helper has to exit half-way. */
static int write_dirfd = -1;
static char write_tmp[32];
static void write_cleanup(void) {
  if (write_dirfd >= 0) unlinkat(write_dirfd, write_tmp, 0);
}

/* WRITE, or WRITE_T (with_mtime): the same, with a u64 mtime in nanoseconds after the mode, set on the
 * file before it is renamed into place (so the guest's copy keeps the host file's time, as rsync -t). */
static void op_write(struct frame *f, int with_mtime) {
  char path[MAX_PATH_LEN + 1], tmp[32];
  uint32_t id = f->id;
  int root = get_root_path(f, "WRITE", path, 0);
  uint32_t mode = get_u32(f);
  uint64_t mtime_ns = with_mtime ? get_u64(f) : 0;
  unsigned more = get_u8(f);
  int err = 0, fd = -1, dirfd = -1, created = 0;
  const char *name = NULL;
  if (root >= 0 && f->bad) { reply_err(id, EINVAL, "WRITE: truncated frame"); root = -1; }
  if (root < 0) err = -1; /* already replied; still swallow the APPENDs below */
  if (!err) {
    dirfd = open_parent(root, path, &name, 1);
    if (dirfd < 0) err = -dirfd;
  }
  if (!err) {
    for (int tries = 0; tries < 100; tries++) {
      tmp_name(tmp, sizeof tmp);
      fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
      if (fd >= 0 || errno != EEXIST) break;
    }
    if (fd < 0) err = errno;
    else {
      created = 1;
      write_dirfd = dirfd;
      memcpy(write_tmp, tmp, sizeof tmp);
    }
  }
  for (;;) {
    if (!err && f->n > f->off) {
      int rc = write_all(fd, f->p + f->off, f->n - f->off);
      if (rc < 0) err = -rc;
    }
    if (!more) break;
    /* The data continues in APPEND frames with the same id; anything else breaks the protocol. */
    if (!read_frame(f) || f->op != OP_APPEND || f->id != id) {
      fprintf(stderr, "envbox-guest: WRITE %u: expected APPEND with the same id\n", id);
      exit(2);
    }
    more = get_u8(f);
    if (f->bad) { fprintf(stderr, "envbox-guest: empty APPEND frame\n"); exit(2); }
  }
  write_dirfd = -1;
  if (err == -1) goto out;
  if (!err && fchmod(fd, mode & 07777) < 0) err = errno;
  if (!err && with_mtime) {
    struct timespec times[2] = {{.tv_nsec = UTIME_OMIT}, {.tv_sec = (time_t)(mtime_ns / 1000000000u), .tv_nsec = (long)(mtime_ns % 1000000000u)}};
    if (futimens(fd, times) < 0) err = errno;
  }
  if (fd >= 0 && close(fd) < 0 && !err) err = errno;
  fd = -1;
  if (!err && renameat(dirfd, tmp, dirfd, name) < 0) err = errno;
  if (!err) pin_parents(root, path, 0);
  if (err) {
    if (created) unlinkat(dirfd, tmp, 0);
    reply_errno(id, err, "WRITE", path);
  } else reply_ok_empty(id);
out:
  if (fd >= 0) { close(fd); unlinkat(dirfd, tmp, 0); }
  if (dirfd >= 0) close(dirfd);
}

static void op_mkdir(struct frame *f) {
  char path[MAX_PATH_LEN + 1];
  int root = get_root_path(f, "MKDIR", path, 0);
  if (root < 0) return;
  uint32_t mode = get_u32(f);
  if (f->bad) { reply_err(f->id, EINVAL, "MKDIR: truncated frame"); return; }
  const char *name;
  int dirfd = open_parent(root, path, &name, 1);
  if (dirfd < 0) { reply_errno(f->id, -dirfd, "MKDIR", path); return; }
  int err = 0;
  if (mkdirat(dirfd, name, mode & 07777) < 0 && errno != EEXIST) err = errno;
  if (!err) {
    int fd = (int)do_openat2(dirfd, name, O_PATH | O_DIRECTORY | O_NOFOLLOW, BENEATH);
    if (fd < 0) err = errno == ELOOP ? ENOTDIR : errno; /* something else is there */
    else close(fd);
  }
  if (!err) err = -chmod_nofollow(dirfd, name, mode & 07777);
  if (!err) pin_parents(root, path, 1);
  close(dirfd);
  if (err) reply_errno(f->id, err, "MKDIR", path);
  else reply_ok_empty(f->id);
}

static void op_symlink(struct frame *f) {
  char path[MAX_PATH_LEN + 1], target[MAX_PATH_LEN + 1], tmp[32];
  int root = get_root_path(f, "SYMLINK", path, 0);
  if (root < 0) return;
  get_str(f, target, sizeof target);
  if (f->bad || !*target) { reply_err(f->id, EINVAL, "SYMLINK %s: missing, empty or over-long target", path); return; }
  const char *name;
  int dirfd = open_parent(root, path, &name, 1);
  if (dirfd < 0) { reply_errno(f->id, -dirfd, "SYMLINK", path); return; }
  int err = 0;
  tmp_name(tmp, sizeof tmp);
  if (symlinkat(target, dirfd, tmp) < 0) err = errno;
  else if (renameat(dirfd, tmp, dirfd, name) < 0) {
    /* a folder is in the way: replace it */
    if ((errno == EISDIR || errno == ENOTEMPTY || errno == EEXIST) && remove_tree(dirfd, name) == 0 && renameat(dirfd, tmp, dirfd, name) == 0) err = 0;
    else err = errno;
    if (err) unlinkat(dirfd, tmp, 0);
  }
  if (!err) pin_parents(root, path, 0);
  close(dirfd);
  if (err) reply_errno(f->id, err, "SYMLINK", path);
  else reply_ok_empty(f->id);
}

static void op_remove(struct frame *f) {
  char path[MAX_PATH_LEN + 1];
  int root = get_root_path(f, "REMOVE", path, 0);
  if (root < 0) return;
  if (f->off != f->n) { reply_err(f->id, EINVAL, "REMOVE: extra bytes after the path"); return; }
  const char *name;
  int dirfd = open_parent(root, path, &name, 0);
  if (dirfd == -ENOENT) { reply_ok_empty(f->id); return; }
  if (dirfd < 0) { reply_errno(f->id, -dirfd, "REMOVE", path); return; }
  unpin_tree(root, path);
  int rc = remove_tree(dirfd, name);
  close(dirfd);
  if (rc < 0) reply_errno(f->id, -rc, "REMOVE", path);
  else reply_ok_empty(f->id);
}

static void op_rename(struct frame *f) {
  char from[MAX_PATH_LEN + 1], to[MAX_PATH_LEN + 1];
  int root = get_root_path(f, "RENAME", from, 0);
  if (root < 0) return;
  get_str(f, to, sizeof to);
  if (f->bad || !path_ok(to, 0)) { reply_err(f->id, EINVAL, "RENAME %s: target must be a relative path without '..', '.' or empty parts", from); return; }
  const char *fname, *tname;
  int ffd = open_parent(root, from, &fname, 0);
  if (ffd < 0) { reply_errno(f->id, -ffd, "RENAME", from); return; }
  int tfd = open_parent(root, to, &tname, 1);
  if (tfd < 0) { close(ffd); reply_errno(f->id, -tfd, "RENAME", to); return; }
  unpin_tree(root, from);
  int err = renameat(ffd, fname, tfd, tname) < 0 ? errno : 0;
  if (!err) {
    pin_parents(root, to, 0);
    if (is_dir_at(tfd, tname)) pin_tree(root, to);
  }
  close(ffd);
  close(tfd);
  if (err) reply_errno(f->id, err, "RENAME", from);
  else reply_ok_empty(f->id);
}

static void op_chmod(struct frame *f) {
  char path[MAX_PATH_LEN + 1];
  int root = get_root_path(f, "CHMOD", path, 0);
  if (root < 0) return;
  uint32_t mode = get_u32(f);
  if (f->bad) { reply_err(f->id, EINVAL, "CHMOD: truncated frame"); return; }
  const char *name;
  int dirfd = open_parent(root, path, &name, 0);
  if (dirfd < 0) { reply_errno(f->id, -dirfd, "CHMOD", path); return; }
  int rc = chmod_nofollow(dirfd, name, mode & 07777);
  close(dirfd);
  if (rc < 0) reply_errno(f->id, -rc, "CHMOD", path);
  else reply_ok_empty(f->id);
}

/* LIST replies with u32 count and entries. A listing larger than one frame goes out as several OK
 * frames with the same id; every one but the last has bit 31 of its count set ("more follows"). */
#define LIST_MORE 0x80000000u
static size_t list_count_at;
static uint32_t list_count;
static uint32_t list_id;

static void list_flush(int more) {
  uint32_t c = list_count | (more ? LIST_MORE : 0);
  out[list_count_at] = c >> 24;
  out[list_count_at + 1] = c >> 16;
  out[list_count_at + 2] = c >> 8;
  out[list_count_at + 3] = c;
  reply_end();
  if (more) {
    flush_out();
    reply_begin(OP_OK, list_id);
    list_count_at = out_len;
    put_u32(0);
    list_count = 0;
  }
}

static void list_entry(unsigned type, const struct stat *st, const char *path) {
  size_t need = 1 + 4 + 8 + 8 + 2 + strlen(path);
  if (out_len - reply_start - 4 + need > MAX_FRAME) list_flush(1);
  put_u8(type);
  put_u32(st->st_mode & 07777);
  put_u64((uint64_t)st->st_size);
  put_u64((uint64_t)st->st_mtim.tv_sec * 1000000000ULL + (uint64_t)st->st_mtim.tv_nsec);
  put_str(path, strlen(path));
  list_count++;
}

static int list_dir(int dirfd, char *rel, size_t rel_len) {
  int fd = (int)do_openat2(dirfd, ".", O_RDONLY | O_DIRECTORY, BENEATH);
  if (fd < 0) return -errno;
  DIR *d = fdopendir(fd);
  if (!d) { close(fd); return -errno; }
  struct dirent *e;
  int rc = 0;
  while (rc == 0 && (e = readdir(d))) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") || !strncmp(e->d_name, TMP_PREFIX, strlen(TMP_PREFIX))) continue;
    size_t nl = strlen(e->d_name), sl = rel_len ? 1 : 0;
    if (rel_len + sl + nl > MAX_PATH_LEN) continue; /* can't be named in a request either */
    struct stat st;
    if (fstatat(fd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) continue; /* gone meanwhile */
    if (sl) rel[rel_len] = '/';
    memcpy(rel + rel_len + sl, e->d_name, nl + 1);
    if (S_ISREG(st.st_mode)) list_entry('f', &st, rel);
    else if (S_ISLNK(st.st_mode)) list_entry('l', &st, rel);
    else if (S_ISDIR(st.st_mode)) {
      list_entry('d', &st, rel);
      int sub = (int)do_openat2(fd, e->d_name, O_PATH | O_DIRECTORY | O_NOFOLLOW, BENEATH);
      if (sub >= 0) {
        rc = list_dir(sub, rel, rel_len + sl + nl);
        close(sub);
      }
    }
    rel[rel_len] = 0;
  }
  closedir(d);
  return rc;
}

static void op_list(struct frame *f) {
  char path[MAX_PATH_LEN + 1];
  int root = get_root_path(f, "LIST", path, 1);
  if (root < 0) return;
  int fd = (int)do_openat2(root_fd[root], *path ? path : ".", O_PATH | O_DIRECTORY, BENEATH);
  if (fd < 0) { reply_errno(f->id, errno, "LIST", path); return; }
  char rel[MAX_PATH_LEN + 1];
  strcpy(rel, path);
  list_id = f->id;
  reply_begin(OP_OK, f->id);
  list_count_at = out_len;
  put_u32(0);
  list_count = 0;
  int rc = list_dir(fd, rel, strlen(rel));
  close(fd);
  if (rc < 0) {
    out_len = reply_start;
    reply_errno(f->id, -rc, "LIST", path);
    return;
  }
  list_flush(0);
}

static void op_hello(struct frame *f) {
  unsigned v = get_u16(f);
  if (f->bad) { reply_err(f->id, EINVAL, "HELLO: missing version"); return; }
  if (v != PROTO_VERSION) { reply_err(f->id, EPROTO, "HELLO: host speaks version %u, this helper speaks %d: update envbox on one side", v, PROTO_VERSION); return; }
  struct utsname u;
  if (uname(&u) < 0) strcpy(u.machine, "unknown");
  reply_begin(OP_OK, f->id);
  put_u16(PROTO_VERSION);
  put_u32((watching ? FEATURE_WATCH : 0) | FEATURE_MTIME);
  put_str(u.machine, strlen(u.machine));
  reply_end();
}

static int serve(void) {
  struct frame f;
  while (read_frame(&f)) {
    switch (f.op) {
    case OP_HELLO: op_hello(&f); break;
    case OP_EVENTS: op_events(&f); break;
    case OP_WRITE: op_write(&f, 0); break;
    case OP_WRITE_T: op_write(&f, 1); break;
    case OP_MKDIR: op_mkdir(&f); break;
    case OP_SYMLINK: op_symlink(&f); break;
    case OP_REMOVE: op_remove(&f); break;
    case OP_RENAME: op_rename(&f); break;
    case OP_CHMOD: op_chmod(&f); break;
    case OP_LIST: op_list(&f); break;
    case OP_PING: reply_ok_empty(f.id); break;
    case OP_APPEND:
      fprintf(stderr, "envbox-guest: APPEND %u without a WRITE\n", f.id);
      exit(2);
    default:
      reply_err(f.id, ENOSYS, "unknown op 0x%02x: this helper is older than envbox on the host", f.op);
    }
    if (f.op != OP_EVENTS && f.op != OP_LIST && f.op != OP_HELLO && f.op != OP_PING) watch_skip_own();
    /* Reply at once when no further request is already waiting; otherwise batch the replies. */
    if (in_pos == in_end || out_len > 65536) flush_out();
  }
  flush_out();
  return 0;
}

int main(int argc, char **argv) {
  if (argc == 2 && !strcmp(argv[1], "--version")) {
    printf("envbox-guest %d\n", PROTO_VERSION);
    return 0;
  }
  if (argc < 2 || strcmp(argv[1], "serve")) {
    fprintf(stderr, "usage: envbox-guest serve [--watch] ROOT...\n       envbox-guest --version\n");
    return 64;
  }
  int i = 2;
  if (i < argc && !strcmp(argv[i], "--watch")) watching = 1, i++;
  if (i == argc) { fprintf(stderr, "envbox-guest: name at least one folder ROOT to serve\n"); return 64; }
  for (; i < argc; i++) {
    if (root_count == MAX_ROOTS) { fprintf(stderr, "envbox-guest: at most %d roots\n", MAX_ROOTS); return 64; }
    if (argv[i][0] != '/') { fprintf(stderr, "envbox-guest: root %s must be an absolute path\n", argv[i]); return 64; }
    int fd = open(argv[i], O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) { fprintf(stderr, "envbox-guest: root %s: %s\n", argv[i], strerror(errno)); return 66; }
    root_fd[root_count++] = fd;
  }
  umask(022);
  atexit(write_cleanup);
  struct rlimit nofile;
  if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
    nofile.rlim_cur = nofile.rlim_max;
    setrlimit(RLIMIT_NOFILE, &nofile);
  }
  for (int r = 0; r < root_count; r++) pin_tree(r, "");
  if (watching) {
    watch_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (watch_fd < 0) { fprintf(stderr, "envbox-guest: inotify: %s (serving without --watch)\n", strerror(errno)); watching = 0; }
    else for (int r = 0; r < root_count; r++) watch_add(r, "");
  }
  return serve();
}
