/* cmds.h - the commands of the r1 binary (one cmd/<name>.c each). */
#ifndef R1_CMD_CMDS_H
#define R1_CMD_CMDS_H

/* Each returns the process exit status: 0 ok, 1 runtime error, 2 usage or bad
 * input, 130 interrupted.  argv[0] is the command name. */
int cmd_init(int argc, char **argv);
int cmd_sample(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_resume(int argc, char **argv);
int cmd_recipe(int argc, char **argv);
int cmd_verify(int argc, char **argv);

/* Prints "r1 CMD: <last error>" and returns the exit status for code. */
int cmd_fail(const char *cmd, int code);

#endif
