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
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

    char **args = calloc((size_t)argc + 2, sizeof *args);
    if (!args) return 1;
    args[0] = "node";
    args[1] = cli;
    for (int i = 1; i < argc; i++) args[i + 1] = argv[i];
    execvp("node", args);
    fprintf(stderr, "envbox: cannot run node: %s\n", strerror(errno));
    return 127;
}
