/* test-eval.c - the majority vote of r1 eval (r1_eval_majority): groups of equal answers
 * (r1_answers_equal), abstentions, ties to the group met first; expected indices by hand. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "stages/evaluate.h"

static void test_majority(void **state)
{
    (void)state;
    /* "1/2" and "0.5" are one group of 2, "5" a group of 2 met first: the tie goes to 0 */
    const char *tie[] = {"5", "1/2", "0.5", "5", NULL, ""};
    assert_int_equal(r1_eval_majority(tie, 6), 0);
    /* a group of 3 ("2", "2.0", "2") beats one of 2 met earlier ("3", "3.0") */
    const char *win[] = {"3", "3.0", "2", "2.0", "2"};
    assert_int_equal(r1_eval_majority(win, 5), 2);
    /* abstentions never vote */
    const char *none[] = {NULL, "", NULL};
    assert_int_equal(r1_eval_majority(none, 3), -1);
    assert_int_equal(r1_eval_majority(none, 0), -1);
    const char *late[] = {NULL, "", "x", "y", "y"};
    assert_int_equal(r1_eval_majority(late, 5), 3);
    /* strings compare normalised: case and a trailing period do not split a group */
    const char *words[] = {"Paris", "london", "paris.", "London"};
    assert_int_equal(r1_eval_majority(words, 4), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_majority),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
