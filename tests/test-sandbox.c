/* test-sandbox.c - the sandbox (stages/rewards/sandbox.h) and the `code` reward: correct,
 * half-correct and broken programs in Python and C, code block extraction, and escapes
 * that must fail and leave the host as it was: fork bomb, endless loops, huge allocation,
 * writes outside the work dir, network, the parent's environment, background children,
 * output floods, symlinks at cleanup.  Escapes run through the sandbox API with small
 * limits so the whole file takes seconds.  Cases needing python3 or cc skip without them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/err.h"
#include "stages/rewards/rewards.h"
#include "stages/rewards/sandbox.h"

static char base[] = "/tmp/r1-test-sandbox-XXXXXX"; /* TMPDIR for the work dirs */
static char secret[64];

static bool have(const char *prog)
{
    const char *dirs[] = {"/usr/local/bin", "/usr/bin", "/bin"};
    char p[256];
    for (size_t i = 0; i < 3; i++) {
        snprintf(p, sizeof(p), "%s/%s", dirs[i], prog);
        if (access(p, X_OK) == 0)
            return true;
    }
    return false;
}

#define NEED(prog)                                                                                 \
    do {                                                                                           \
        if (!have(prog)) {                                                                         \
            print_message("skipped: %s not found in /usr/local/bin:/usr/bin:/bin\n", prog);        \
            skip();                                                                                \
        }                                                                                          \
    } while (0)

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Entries in dir other than . and .. (-1 when it cannot be opened). */
static int entries(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    closedir(d);
    return n;
}

/* Nothing of the run's process group is left, not even a zombie. */
static void assert_group_gone(const struct r1_sandbox_result *r)
{
    assert_true(r->pgid > 0);
    errno = 0;
    assert_int_equal(kill(-r->pgid, 0), -1);
    assert_int_equal(errno, ESRCH);
}

/* The host can still fork, and the child runs. */
static void assert_host_forks(void)
{
    pid_t p = fork();
    assert_true(p >= 0);
    if (p == 0)
        _exit(7);
    int st = 0;
    assert_int_equal(waitpid(p, &st, 0), p);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 7);
}

static struct r1_sandbox_limits small(void)
{
    struct r1_sandbox_limits l = r1_sandbox_limits_default();
    l.cpu_seconds = 1;
    l.wall_seconds = 2;
    return l;
}

/* Runs Python source in a fresh work dir (removed afterwards, checked) under lim. */
static void run_py(const char *src, const char *input, const struct r1_sandbox_limits *lim,
                   struct r1_sandbox_result *r)
{
    char *dir = NULL;
    assert_int_equal(r1_sandbox_dir_create(&dir), 0);
    assert_int_equal(r1_sandbox_write_file(dir, "prog.py", src, strlen(src)), 0);
    const char *argv[] = {"python3", "-I", "-S", "prog.py", NULL};
    int rc = r1_sandbox_run(argv, input, input ? strlen(input) : 0, dir, lim, r);
    if (rc != 0)
        fail_msg("r1_sandbox_run: %s", r1_err_last());
    assert_int_equal(r1_sandbox_dir_remove(dir), 0);
    struct stat st;
    assert_int_not_equal(lstat(dir, &st), 0);
    free(dir);
    assert_int_equal(entries(base), 0);
}

static double reward(const char *completion, const char *meta_json)
{
    json_error_t je;
    json_t *meta = json_loads(meta_json, 0, &je);
    if (!meta)
        fail_msg("bad test meta: %s", je.text);
    struct r1_reward_input in = {"", completion, NULL, meta, 10, 100, NAN};
    double v = r1_reward_find("code")->fn(&in, NULL);
    json_decref(meta);
    assert_int_equal(entries(base), 0); /* no work dir left behind */
    return v;
}

static const char sum_tests[] = "{\"language\": \"python\", \"tests\": ["
                                "{\"input\": \"1 2\\n\", \"output\": \"3\\n\"},"
                                "{\"input\": \"10 -4\\n\", \"output\": \"6\"},"
                                "{\"input\": \"5 5\\n\", \"output\": \"10  \\n\\n\"},"
                                "{\"input\": \"0 7\\n\", \"output\": \"7\\n\"}]}";

/* ---- the reward on honest programs ---- */

static void test_python_correct(void **state)
{
    (void)state;
    NEED("python3");
    const char *c = "<think>add them</think>\nHere:\n```python\n"
                    "a, b = map(int, input().split())\nprint(a + b)\n```\n";
    double t0 = now();
    assert_float_equal(reward(c, sum_tests), 1.0, 1e-12);
    print_message("python, 4 tests: %.3f s\n", now() - t0);
}

static void test_python_half(void **state)
{
    (void)state;
    NEED("python3");
    /* right when a < 5 (1 2 and 0 7), wrong otherwise */
    const char *c = "```py\na, b = map(int, input().split())\n"
                    "print(a + b if a < 5 else a - b)\n```";
    assert_float_equal(reward(c, sum_tests), 0.5, 1e-12);
    /* a crash after the right output fails that test */
    const char *crash = "```python\na, b = map(int, input().split())\nprint(a + b)\n"
                        "raise SystemExit(3)\n```";
    assert_float_equal(reward(crash, sum_tests), 0.0, 1e-12);
}

static void test_c_correct(void **state)
{
    (void)state;
    NEED("cc");
    const char *c = "```c\n#include <stdio.h>\n#include <math.h>\n"
                    "int main(void) { long a, b; if (scanf(\"%ld %ld\", &a, &b) != 2) return 1;\n"
                    "  printf(\"%ld\\n\", (long)fabs((double)(a + b))); return 0; }\n```";
    const char *meta = "{\"language\": \"c\", \"tests\": ["
                       "{\"input\": \"1 2\", \"output\": \"3\"},"
                       "{\"input\": \"-10 4\", \"output\": \"6\\n\"}]}";
    double t0 = now();
    assert_float_equal(reward(c, meta), 1.0, 1e-12);
    print_message("c, compile + 2 tests: %.3f s\n", now() - t0);
    /* the language from the fence when the item has none */
    const char *meta2 = "{\"tests\": [{\"input\": \"1 2\", \"output\": \"3\"}]}";
    assert_float_equal(reward(c, meta2), 1.0, 1e-12);
}

static void test_c_compile_error(void **state)
{
    (void)state;
    NEED("cc");
    const char *c = "```c\nint main(void) { return undefined_thing + ; }\n```";
    const char *meta = "{\"language\": \"c\", \"tests\": [{\"input\": \"\", \"output\": \"\"}]}";
    assert_float_equal(reward(c, meta), 0.0, 1e-12);
    /* compiles, links nothing missing, prints nothing: the empty output matches */
    const char *ok = "```c\nint main(void) { return 0; }\n```";
    assert_float_equal(reward(ok, meta), 1.0, 1e-12);
}

static void test_extraction(void **state)
{
    (void)state;
    NEED("python3");
    const char *meta = "{\"tests\": [{\"input\": \"\", \"output\": \"hi\"}]}";
    /* the last block counts */
    assert_float_equal(
        reward("```python\nprint('no')\n```\ntext\n```python\nprint('hi')\n```", meta), 1.0, 1e-12);
    assert_float_equal(reward("```python\nprint('hi')\n```\n```python\nprint('no')\n```", meta),
                       0.0, 1e-12);
    /* a block inside the thinking does not count; an unclosed thinking hides everything */
    assert_float_equal(reward("<think>```python\nprint('hi')\n```</think> done", meta), 0.0, 1e-12);
    assert_float_equal(reward("<think>```python\nprint('hi')\n```", meta), 0.0, 1e-12);
    /* unclosed block, no block, unknown fence language, no language at all */
    assert_float_equal(reward("```python\nprint('hi')\n", meta), 0.0, 1e-12);
    assert_float_equal(reward("print('hi')", meta), 0.0, 1e-12);
    assert_float_equal(reward("```ruby\nputs 'hi'\n```", meta), 0.0, 1e-12);
    assert_float_equal(reward("```\nprint('hi')\n```", meta), 0.0, 1e-12);
    /* the item's language wins over a missing or different fence */
    const char *py = "{\"language\": \"Python\", \"tests\": [{\"output\": \"hi\"}]}";
    assert_float_equal(reward("```\nprint('hi')\n```", py), 1.0, 1e-12);
    assert_float_equal(reward("  ````text\nprint('hi')\n  ````  \n", py), 1.0, 1e-12);
    /* malformed items score 0 without running anything */
    const char *bad[] = {"{}",
                         "{\"tests\": []}",
                         "{\"tests\": 3}",
                         "{\"tests\": [3]}",
                         "{\"tests\": [{\"input\": \"x\"}]}",
                         "{\"tests\": [{\"output\": 1}]}",
                         "{\"language\": \"cobol\", \"tests\": [{\"output\": \"hi\"}]}",
                         "{\"language\": 7, \"tests\": [{\"output\": \"hi\"}]}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_float_equal(reward("```python\nprint('hi')\n```", bad[i]), 0.0, 1e-12);
    struct r1_reward_input in = {NULL, NULL, NULL, NULL, 0, 0, NAN};
    assert_float_equal(r1_reward_code(&in, NULL), 0.0, 1e-12);
    assert_float_equal(r1_reward_code(NULL, NULL), 0.0, 1e-12);
}

/* ---- escapes ---- */

static void test_fork_bomb(void **state)
{
    (void)state;
    NEED("python3");
    struct r1_sandbox_limits l = small();
    struct r1_sandbox_result r;
    const char *src = "import os\nn = 0\nwhile True:\n    try:\n        os.fork()\n"
                      "        n += 1\n    except OSError:\n        pass\n";
    double t0 = now();
    run_py(src, NULL, &l, &r);
    double dt = now() - t0;
    print_message("fork bomb: %.2f s, exit %d signal %d timed_out %d\n", dt, r.exit_status,
                  r.signal, r.timed_out);
    assert_true(r.exit_status != 0);
    assert_true(dt < l.wall_seconds + 2.5);
    assert_group_gone(&r);
    assert_host_forks();
    r1_sandbox_result_release(&r);
    /* exactly `processes` processes, the program included, in its own user namespace */
    run_py("import os, time\nn = 1\nwhile True:\n    try:\n        pid = os.fork()\n"
           "    except OSError:\n        break\n    if pid == 0:\n        time.sleep(30)\n"
           "        os._exit(0)\n    n += 1\nprint(n)\n",
           NULL, &l, &r);
    print_message("processes reached: %s", r.out);
    if (r.isolation & R1_SANDBOX_USERNS) {
        char want[16];
        snprintf(want, sizeof(want), "%d\n", l.processes);
        assert_string_equal(r.out, want);
    }
    assert_int_equal(r.exit_status, 0);
    assert_group_gone(&r);
    r1_sandbox_result_release(&r);
}

static void test_endless_loop(void **state)
{
    (void)state;
    NEED("python3");
    struct r1_sandbox_limits l = small();
    struct r1_sandbox_result r;
    /* spinning: the CPU limit (1 s) ends it */
    double t0 = now();
    run_py("while True:\n    pass\n", NULL, &l, &r);
    double dt = now() - t0;
    print_message("busy loop: %.2f s, signal %d, timed_out %d\n", dt, r.signal, r.timed_out);
    assert_true(r.signal == SIGKILL || r.signal == SIGXCPU);
    assert_true(dt < 3.0);
    assert_group_gone(&r);
    r1_sandbox_result_release(&r);
    /* sleeping: the wall clock (2 s) ends it */
    l.wall_seconds = 1;
    t0 = now();
    run_py("import time\nprint('start', flush=True)\ntime.sleep(60)\n", NULL, &l, &r);
    dt = now() - t0;
    print_message("sleeper: %.2f s, timed_out %d\n", dt, r.timed_out);
    assert_true(r.timed_out);
    assert_int_equal(r.signal, SIGKILL);
    assert_string_equal(r.out, "start\n");
    assert_true(dt < 2.5);
    assert_group_gone(&r);
    r1_sandbox_result_release(&r);
    /* a program that never reads a large stdin does not block the caller */
    size_t big = 8u << 20;
    char *in = malloc(big + 1);
    memset(in, 'x', big);
    in[big] = '\0';
    run_py("import time\ntime.sleep(60)\n", in, &l, &r);
    assert_true(r.timed_out);
    free(in);
    r1_sandbox_result_release(&r);
}

static void test_huge_allocation(void **state)
{
    (void)state;
    NEED("python3");
    struct r1_sandbox_limits l = small();
    struct r1_sandbox_result r;
    run_py("try:\n    x = bytearray(1 << 33)\n    print('allocated', len(x))\n"
           "except MemoryError:\n    print('refused')\n",
           NULL, &l, &r);
    assert_string_equal(r.out, "refused\n");
    assert_group_gone(&r);
    r1_sandbox_result_release(&r);
    /* creeping growth dies too (MemoryError or a kill), long before the wall clock */
    l.wall_seconds = 10;
    run_py("a = []\nwhile True:\n    a.append(bytearray(1 << 20))\n", NULL, &l, &r);
    assert_true(r.exit_status != 0);
    assert_false(r.timed_out);
    r1_sandbox_result_release(&r);
}

static void test_write_outside(void **state)
{
    (void)state;
    NEED("python3");
    /* a directory anyone may write to (so only the sandbox stands in the way) */
    char victim[] = "/tmp/r1-test-victim-XXXXXX";
    assert_non_null(mkdtemp(victim));
    assert_int_equal(chmod(victim, 0777), 0);
    char loose[128];
    snprintf(loose, sizeof(loose), "/tmp/r1-test-escape-%d-%ld", (int)getpid(), (long)time(NULL));
    char src[1024];
    snprintf(src, sizeof(src),
             "import os\n"
             "for p in ['%s/pwned', '%s', '../r1-escape', '/dev/shm/r1-escape-%d']:\n"
             "    try:\n"
             "        open(p, 'w').write('x')\n"
             "        print('wrote', p)\n"
             "    except OSError as e:\n"
             "        print('denied', e.errno)\n"
             "try:\n    os.mkdir('%s/d')\n    print('mkdir')\nexcept OSError:\n    pass\n"
             "open('mine.txt', 'w').write('ok')\nos.mkdir('sub')\n"
             "os.symlink('/etc/passwd', 'sub/link')\nos.chmod('sub', 0)\n"
             "print('own', open('mine.txt').read())\n",
             victim, loose, (int)getpid(), victim);
    struct r1_sandbox_limits l = small();
    struct r1_sandbox_result r;
    run_py(src, NULL, &l, &r);
    char iso[160];
    print_message("write outside: isolation %s; output:\n%s",
                  r1_sandbox_isolation_str(r.isolation, iso, sizeof(iso)), r.out);
    bool contained = (r.isolation & R1_SANDBOX_LANDLOCK_FS) != 0;
    if (contained) {
        assert_null(strstr(r.out, "wrote"));
        assert_null(strstr(r.out, "mkdir"));
    }
    assert_non_null(strstr(r.out, "own ok")); /* its own directory works */
    assert_int_equal(entries(victim), contained ? 0 : entries(victim));
    struct stat st;
    bool loose_exists = lstat(loose, &st) == 0;
    unlink(loose);
    char shm[128];
    snprintf(shm, sizeof(shm), "/dev/shm/r1-escape-%d", (int)getpid());
    unlink(shm);
    assert_int_equal(r1_sandbox_dir_remove(victim), 0);
    assert_int_equal(stat("/etc/passwd", &st), 0); /* the link was removed, not its target */
    r1_sandbox_result_release(&r);
    if (!contained) {
        print_message("skipped: Landlock is not available, writes outside are not blocked\n");
        skip();
    }
    assert_false(loose_exists);
}

static void test_network(void **state)
{
    (void)state;
    NEED("python3");
    /* a listener on the host's loopback the program will try to reach */
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    assert_true(ls >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(ls, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(ls, 4), 0);
    socklen_t al = sizeof(a);
    getsockname(ls, (struct sockaddr *)&a, &al);
    char src[1024];
    snprintf(src, sizeof(src),
             "import socket\n"
             "for fam, typ, addr in [(socket.AF_INET, socket.SOCK_STREAM, ('127.0.0.1', %d)),\n"
             "        (socket.AF_INET, socket.SOCK_DGRAM, ('127.0.0.1', 53)),\n"
             "        (socket.AF_INET6, socket.SOCK_STREAM, ('::1', %d)),\n"
             "        (socket.AF_INET, socket.SOCK_STREAM, ('1.1.1.1', 80))]:\n"
             "    try:\n"
             "        s = socket.socket(fam, typ)\n"
             "        s.settimeout(0.5)\n"
             "        s.connect(addr)\n"
             "        s.send(b'x')\n"
             "        print('connected')\n"
             "    except OSError as e:\n"
             "        print('blocked', e.errno)\n",
             ntohs(a.sin_port), ntohs(a.sin_port));
    struct r1_sandbox_limits l = small();
    struct r1_sandbox_result r;
    run_py(src, NULL, &l, &r);
    print_message("network:\n%s", r.out);
    assert_null(strstr(r.out, "connected"));
    int blocked = 0;
    for (const char *p = r.out; (p = strstr(p, "blocked")); p++)
        blocked++;
    assert_int_equal(blocked, 4);
    int c = accept(ls, NULL, NULL);
    assert_int_equal(c, -1); /* nobody knocked */
    close(ls);
    r1_sandbox_result_release(&r);
    /* through the reward: a program that needs the network scores 0 */
    const char *comp = "```python\nimport socket\ns = socket.create_connection(('127.0.0.1', 1))\n"
                       "print('up')\n```";
    assert_float_equal(
        reward(comp, "{\"language\": \"python\", \"tests\": [{\"output\": \"up\"}]}"), 0.0, 1e-12);
}

static void test_env_secret(void **state)
{
    (void)state;
    NEED("python3");
    char src[1024];
    snprintf(src, sizeof(src),
             "import os\nprint(dict(os.environ))\n"
             "for p in ['/proc/%d/environ', '/proc/%d/cmdline', '/proc/self/environ',\n"
             "          '/proc/1/environ', '/proc/%d/mem']:\n"
             "    try:\n"
             "        print(p, open(p, 'rb').read(4096))\n"
             "    except OSError as e:\n"
             "        print(p, 'denied', e.errno)\n",
             (int)getpid(), (int)getpid(), (int)getpid());
    struct r1_sandbox_limits l = small();
    struct r1_sandbox_result r;
    run_py(src, NULL, &l, &r);
    print_message("environment seen:\n%s", r.out);
    assert_null(strstr(r.out, secret));
    assert_null(strstr(r.out, "R1_TEST_SECRET"));
    assert_non_null(strstr(r.out, "PATH"));
    r1_sandbox_result_release(&r);
    /* the reward: printing the secret would be the expected output; it scores 0 */
    char meta[256];
    snprintf(meta, sizeof(meta), "{\"language\": \"python\", \"tests\": [{\"output\": \"%s\"}]}",
             secret);
    assert_float_equal(
        reward("```python\nimport os\nprint(os.environ.get('R1_TEST_SECRET'))\n```", meta), 0.0,
        1e-12);
}

static void test_background_child(void **state)
{
    (void)state;
    NEED("python3");
    /* the program forks a child that tries to leave the group and lingers; the program
     * exits at once: the run returns at once, the lingering child is dead */
    const char *src = "import os, time, sys\n"
                      "if os.fork() == 0:\n"
                      "    try:\n        os.setsid()\n        print('left the group', flush=True)\n"
                      "    except OSError:\n        print('setsid denied', flush=True)\n"
                      "    if os.fork() == 0:\n        time.sleep(30)\n        print('survived')\n"
                      "    time.sleep(30)\n    sys.exit(0)\n"
                      "time.sleep(0.3)\nprint('parent done', flush=True)\n";
    struct r1_sandbox_limits l = small();
    l.wall_seconds = 10;
    struct r1_sandbox_result r;
    double t0 = now();
    run_py(src, NULL, &l, &r);
    double dt = now() - t0;
    print_message("background child: %.2f s\n%s", dt, r.out);
    assert_int_equal(r.exit_status, 0);
    assert_false(r.timed_out);
    assert_true(dt < 5.0); /* not the 30 s the children sleep (slack for a loaded machine) */
    assert_non_null(strstr(r.out, "setsid denied"));
    assert_non_null(strstr(r.out, "parent done"));
    assert_null(strstr(r.out, "survived"));
    assert_group_gone(&r);
    r1_sandbox_result_release(&r);
}

static void test_output_flood(void **state)
{
    (void)state;
    NEED("python3");
    struct r1_sandbox_limits l = small();
    l.output_cap = 4096;
    l.wall_seconds = 10;
    struct r1_sandbox_result r;
    double t0 = now();
    run_py("import sys\nwhile True:\n    sys.stdout.write('x' * 10000)\n"
           "    sys.stderr.write('y' * 10000)\n",
           NULL, &l, &r);
    double dt = now() - t0;
    print_message("flood: %.2f s, kept %zu + %zu bytes\n", dt, r.out_len, r.err_len);
    assert_true(r.output_truncated);
    assert_false(r.timed_out);
    assert_true(r.out_len <= 4096 && r.err_len <= 4096);
    assert_int_equal(strlen(r.out), r.out_len);
    assert_true(dt < 5.0); /* the cap, not the wall clock, ended it */
    assert_group_gone(&r);
    r1_sandbox_result_release(&r);
}

/* ---- the API itself ---- */

static void test_api(void **state)
{
    (void)state;
    struct r1_sandbox_result r;
    /* a missing program is an error, not a result; so is an empty argv */
    const char *nope[] = {"r1-no-such-program", NULL};
    assert_int_equal(r1_sandbox_run(nope, NULL, 0, NULL, NULL, &r), R1_EINVAL);
    assert_non_null(strstr(r1_err_last(), "r1-no-such-program"));
    const char *none[] = {NULL};
    assert_int_equal(r1_sandbox_run(none, NULL, 0, NULL, NULL, &r), R1_EINVAL);
    /* stdin in, stdout and stderr out, exit status; a private dir when none is given */
    const char *sh[] = {"sh", "-c", "cat; echo err >&2; pwd; exit 3", NULL};
    assert_int_equal(r1_sandbox_run(sh, "hello\n", 6, NULL, NULL, &r), 0);
    assert_int_equal(r.exit_status, 3);
    assert_int_equal(r.signal, 0);
    assert_string_equal(r.err, "err\n");
    assert_memory_equal(r.out, "hello\n", 6);
    assert_non_null(strstr(r.out, "/r1-sandbox-"));
    char iso[160];
    print_message("isolation engaged here: %s (euid %d)\n",
                  r1_sandbox_isolation_str(r.isolation, iso, sizeof(iso)), (int)geteuid());
#if defined(__x86_64__) || defined(__aarch64__)
    assert_true(r.isolation & R1_SANDBOX_SECCOMP);
#endif
    if (geteuid() == 0)
        assert_true(r.isolation & R1_SANDBOX_UID_DROP);
    assert_group_gone(&r);
    r1_sandbox_result_release(&r);
    assert_int_equal(entries(base), 0);
    /* the child sees only the minimal environment and runs as nobody when we are root */
    const char *env[] = {"sh", "-c", "env | sort; id -u", NULL};
    assert_int_equal(r1_sandbox_run(env, NULL, 0, NULL, NULL, &r), 0);
    assert_null(strstr(r.out, secret));
    assert_non_null(strstr(r.out, "LANG=C.UTF-8\n"));
    if (geteuid() == 0)
        assert_non_null(strstr(r.out, "65534"));
    r1_sandbox_result_release(&r);
    /* a requirement that cannot hold fails the run with R1_ESTATE */
    struct r1_sandbox_limits l = r1_sandbox_limits_default();
    l.require = 1u << 30;
    const char *t[] = {"true", NULL};
    assert_int_equal(r1_sandbox_run(t, NULL, 0, NULL, &l, &r), R1_ESTATE);
    assert_int_equal(entries(base), 0);
    /* cleanup never follows links: a link to a directory outside is removed, not emptied */
    char keep[] = "/tmp/r1-test-keep-XXXXXX";
    assert_non_null(mkdtemp(keep));
    char f[256], link[256];
    snprintf(f, sizeof(f), "%s/precious", keep);
    FILE *fp = fopen(f, "w");
    fputs("x", fp);
    fclose(fp);
    char *dir = NULL;
    assert_int_equal(r1_sandbox_dir_create(&dir), 0);
    snprintf(link, sizeof(link), "%s/l", dir);
    assert_int_equal(symlink(keep, link), 0);
    assert_int_equal(r1_sandbox_dir_remove(dir), 0);
    free(dir);
    assert_int_equal(entries(keep), 1);
    assert_int_equal(r1_sandbox_dir_remove(keep), 0);
    assert_int_equal(r1_sandbox_dir_remove("/tmp/r1-test-does-not-exist"), 0);
}

static int setup(void **state)
{
    (void)state;
    if (!mkdtemp(base) || chmod(base, 0711) != 0) /* nobody must pass through it */
        return -1;
    setenv("TMPDIR", base, 1);
    snprintf(secret, sizeof(secret), "s3cr3t-%d-%ld", (int)getpid(), (long)time(NULL));
    setenv("R1_TEST_SECRET", secret, 1);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    return r1_sandbox_dir_remove(base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_api),
        cmocka_unit_test(test_python_correct),
        cmocka_unit_test(test_python_half),
        cmocka_unit_test(test_c_correct),
        cmocka_unit_test(test_c_compile_error),
        cmocka_unit_test(test_extraction),
        cmocka_unit_test(test_fork_bomb),
        cmocka_unit_test(test_endless_loop),
        cmocka_unit_test(test_huge_allocation),
        cmocka_unit_test(test_write_outside),
        cmocka_unit_test(test_network),
        cmocka_unit_test(test_env_secret),
        cmocka_unit_test(test_background_child),
        cmocka_unit_test(test_output_flood),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
