/* language.c - the language-consistency reward (DeepSeek-R1 §2.3.3): the share of the
 * chain of thought's words written in the target language's script.
 *
 * UTF-8 is decoded here (strict: overlongs, surrogates and values past U+10FFFF are
 * invalid; each invalid byte is a letter of no script, so it makes its word a non-target
 * word).  Characters are classed by Unicode block (an approximation of the Script
 * property): letters of a script, marks (combining marks, joiners: they continue a word
 * and have no script), and separators (everything else: space, punctuation, digits of any
 * script, symbols, emoji).  A word is a maximal run of letters; each Han, Hiragana,
 * Katakana and Thai character is a word by itself.  A word counts for the target when
 * all its letters are in one of the target's scripts. */
#include "stages/rewards/rewards.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum script {
    S_LATIN,
    S_GREEK,
    S_CYRILLIC,
    S_ARMENIAN,
    S_HEBREW,
    S_ARABIC,
    S_DEVANAGARI,
    S_BENGALI,
    S_TAMIL,
    S_THAI,
    S_GEORGIAN,
    S_HANGUL,
    S_HAN,
    S_HIRAGANA,
    S_KATAKANA,
    S_OTHER,   /* a letter of a script no language here uses */
    S_INVALID, /* an invalid UTF-8 byte */
};

#define BIT(s) (1u << (s))

enum cls { C_SEP = 0, C_MARK, C_LETTER, C_SINGLE };

/* Overrides inside the script blocks below (checked first), sorted. */
static const struct {
    uint32_t lo, hi;
    enum cls cls;
} special[] = {
    {0x00D7, 0x00D7, C_SEP},  {0x00F7, 0x00F7, C_SEP},    {0x02B0, 0x036F, C_MARK},
    {0x0375, 0x0375, C_SEP},  {0x037E, 0x037E, C_SEP},    {0x0384, 0x0385, C_SEP},
    {0x0387, 0x0387, C_SEP},  {0x03F6, 0x03F6, C_SEP},    {0x0482, 0x0482, C_SEP},
    {0x0483, 0x0489, C_MARK}, {0x055A, 0x055F, C_SEP},    {0x0589, 0x058A, C_SEP},
    {0x0591, 0x05BD, C_MARK}, {0x05BE, 0x05BE, C_SEP},    {0x05BF, 0x05BF, C_MARK},
    {0x05C0, 0x05C0, C_SEP},  {0x05C1, 0x05C2, C_MARK},   {0x05C3, 0x05C3, C_SEP},
    {0x05C4, 0x05C5, C_MARK}, {0x05C6, 0x05C6, C_SEP},    {0x05C7, 0x05C7, C_MARK},
    {0x05F3, 0x05F4, C_SEP},  {0x0600, 0x060F, C_SEP},    {0x0610, 0x061A, C_MARK},
    {0x061B, 0x061F, C_SEP},  {0x064B, 0x065F, C_MARK},   {0x0660, 0x066D, C_SEP},
    {0x0670, 0x0670, C_MARK}, {0x06D4, 0x06D4, C_SEP},    {0x06D6, 0x06ED, C_MARK},
    {0x06F0, 0x06F9, C_SEP},  {0x06FD, 0x06FE, C_SEP},    {0x08D3, 0x08FF, C_MARK},
    {0x0900, 0x0903, C_MARK}, {0x093A, 0x094F, C_MARK},   {0x0951, 0x0957, C_MARK},
    {0x0962, 0x0963, C_MARK}, {0x0964, 0x0970, C_SEP},    {0x0981, 0x0983, C_MARK},
    {0x09BC, 0x09D7, C_MARK}, {0x09E2, 0x09E3, C_MARK},   {0x09E6, 0x09FE, C_SEP},
    {0x0A66, 0x0A6F, C_SEP},  {0x0AE6, 0x0AEF, C_SEP},    {0x0B66, 0x0B6F, C_SEP},
    {0x0B82, 0x0B82, C_MARK}, {0x0BBE, 0x0BCD, C_MARK},   {0x0BD7, 0x0BD7, C_MARK},
    {0x0BE6, 0x0BFA, C_SEP},  {0x0C66, 0x0C6F, C_SEP},    {0x0CE6, 0x0CEF, C_SEP},
    {0x0D66, 0x0D6F, C_SEP},  {0x0DE6, 0x0DEF, C_SEP},    {0x0E31, 0x0E31, C_MARK},
    {0x0E34, 0x0E3A, C_MARK}, {0x0E3F, 0x0E3F, C_SEP},    {0x0E47, 0x0E4E, C_MARK},
    {0x0E4F, 0x0E5B, C_SEP},  {0x0F20, 0x0F33, C_SEP},    {0x1040, 0x1049, C_SEP},
    {0x1AB0, 0x1AFF, C_MARK}, {0x1CD0, 0x1CFF, C_MARK},   {0x1DC0, 0x1DFF, C_MARK},
    {0x1FBD, 0x1FBD, C_SEP},  {0x1FBF, 0x1FC1, C_SEP},    {0x1FCD, 0x1FCF, C_SEP},
    {0x1FDD, 0x1FDF, C_SEP},  {0x1FED, 0x1FEF, C_SEP},    {0x1FFD, 0x1FFE, C_SEP},
    {0x200C, 0x200D, C_MARK}, {0x20D0, 0x20FF, C_MARK},   {0x2DE0, 0x2DFF, C_MARK},
    {0x302A, 0x302F, C_MARK}, {0x3031, 0x3035, C_MARK},   {0x3099, 0x309C, C_MARK},
    {0x30FB, 0x30FB, C_SEP},  {0xA66F, 0xA67F, C_MARK},   {0xA69E, 0xA69F, C_MARK},
    {0xFB1E, 0xFB1E, C_MARK}, {0xFB29, 0xFB29, C_SEP},    {0xFD3E, 0xFD3F, C_SEP},
    {0xFDFC, 0xFDFD, C_SEP},  {0xFE00, 0xFE0F, C_MARK},   {0xFE20, 0xFE2F, C_MARK},
    {0xFF9E, 0xFF9F, C_MARK}, {0xE0000, 0xE0FFF, C_MARK},
};

/* Letter blocks, sorted; a code point in none of them is a separator. */
static const struct {
    uint32_t lo, hi;
    enum script script;
    bool single; /* each character is a word */
} block[] = {
    {0x0041, 0x005A, S_LATIN, false},      {0x0061, 0x007A, S_LATIN, false},
    {0x00AA, 0x00AA, S_LATIN, false},      {0x00BA, 0x00BA, S_LATIN, false},
    {0x00C0, 0x02AF, S_LATIN, false},      {0x0370, 0x03FF, S_GREEK, false},
    {0x0400, 0x052F, S_CYRILLIC, false},   {0x0530, 0x058F, S_ARMENIAN, false},
    {0x0590, 0x05FF, S_HEBREW, false},     {0x0600, 0x06FF, S_ARABIC, false},
    {0x0700, 0x074F, S_OTHER, false},      {0x0750, 0x077F, S_ARABIC, false},
    {0x0780, 0x089F, S_OTHER, false},      {0x08A0, 0x08FF, S_ARABIC, false},
    {0x0900, 0x097F, S_DEVANAGARI, false}, {0x0980, 0x09FF, S_BENGALI, false},
    {0x0A00, 0x0B7F, S_OTHER, false},      {0x0B80, 0x0BFF, S_TAMIL, false},
    {0x0C00, 0x0DFF, S_OTHER, false},      {0x0E00, 0x0E7F, S_THAI, true},
    {0x0E80, 0x109F, S_OTHER, false},      {0x10A0, 0x10FF, S_GEORGIAN, false},
    {0x1100, 0x11FF, S_HANGUL, false},     {0x1200, 0x1C7F, S_OTHER, false},
    {0x1C80, 0x1C8F, S_CYRILLIC, false},   {0x1C90, 0x1CBF, S_GEORGIAN, false},
    {0x1CC0, 0x1CCF, S_OTHER, false},      {0x1D00, 0x1DBF, S_LATIN, false},
    {0x1E00, 0x1EFF, S_LATIN, false},      {0x1F00, 0x1FFF, S_GREEK, false},
    {0x2C00, 0x2C5F, S_OTHER, false},      {0x2C60, 0x2C7F, S_LATIN, false},
    {0x2C80, 0x2CFF, S_OTHER, false},      {0x2D00, 0x2D2F, S_GEORGIAN, false},
    {0x2D30, 0x2DDF, S_OTHER, false},      {0x2E80, 0x2FDF, S_HAN, true},
    {0x3005, 0x3007, S_HAN, true},         {0x3021, 0x3029, S_HAN, true},
    {0x303B, 0x303C, S_HAN, true},         {0x3041, 0x309F, S_HIRAGANA, true},
    {0x30A1, 0x30FF, S_KATAKANA, true},    {0x3100, 0x312F, S_OTHER, false},
    {0x3131, 0x318F, S_HANGUL, false},     {0x31A0, 0x31BF, S_OTHER, false},
    {0x31F0, 0x31FF, S_KATAKANA, true},    {0x3400, 0x4DBF, S_HAN, true},
    {0x4E00, 0x9FFF, S_HAN, true},         {0xA000, 0xA63F, S_OTHER, false},
    {0xA640, 0xA69F, S_CYRILLIC, false},   {0xA6A0, 0xA6FF, S_OTHER, false},
    {0xA720, 0xA7FF, S_LATIN, false},      {0xA800, 0xA95F, S_OTHER, false},
    {0xA960, 0xA97F, S_HANGUL, false},     {0xA980, 0xAB2F, S_OTHER, false},
    {0xAB30, 0xAB6F, S_LATIN, false},      {0xAB70, 0xABFF, S_OTHER, false},
    {0xAC00, 0xD7FF, S_HANGUL, false},     {0xF900, 0xFAFF, S_HAN, true},
    {0xFB00, 0xFB06, S_LATIN, false},      {0xFB13, 0xFB17, S_ARMENIAN, false},
    {0xFB1D, 0xFB4F, S_HEBREW, false},     {0xFB50, 0xFDFF, S_ARABIC, false},
    {0xFE70, 0xFEFE, S_ARABIC, false},     {0xFF21, 0xFF3A, S_LATIN, false},
    {0xFF41, 0xFF5A, S_LATIN, false},      {0xFF66, 0xFF9D, S_KATAKANA, true},
    {0xFFA0, 0xFFDC, S_HANGUL, false},     {0x10000, 0x1CFFF, S_OTHER, false},
    {0x1E000, 0x1EFFF, S_OTHER, false},    {0x20000, 0x3FFFF, S_HAN, true},
};

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

static enum cls classify(uint32_t cp, enum script *script)
{
    if (cp < 0x80) {
        *script = S_LATIN;
        return ((cp | 0x20) >= 'a' && (cp | 0x20) <= 'z') ? C_LETTER : C_SEP;
    }
    size_t lo = 0, hi = N_OF(special);
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cp < special[mid].lo)
            hi = mid;
        else if (cp > special[mid].hi)
            lo = mid + 1;
        else
            return special[mid].cls;
    }
    lo = 0;
    hi = N_OF(block);
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cp < block[mid].lo) {
            hi = mid;
        } else if (cp > block[mid].hi) {
            lo = mid + 1;
        } else {
            *script = block[mid].script;
            return block[mid].single ? C_SINGLE : C_LETTER;
        }
    }
    return C_SEP;
}

/* One code point from s[*i] (advancing *i); false for an invalid byte (skipped alone). */
static bool utf8_next(const unsigned char *s, size_t n, size_t *i, uint32_t *cp)
{
    unsigned char c = s[*i];
    if (c < 0x80) {
        *cp = c;
        (*i)++;
        return true;
    }
    int len;
    uint32_t v, min;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
        v = c & 0x1F;
        min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        v = c & 0x0F;
        min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        v = c & 0x07;
        min = 0x10000;
    } else {
        (*i)++;
        return false;
    }
    if (n - *i < (size_t)len) {
        (*i)++;
        return false;
    }
    for (int k = 1; k < len; k++) {
        unsigned char d = s[*i + (size_t)k];
        if ((d & 0xC0) != 0x80) {
            (*i)++;
            return false;
        }
        v = (v << 6) | (d & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) {
        (*i)++;
        return false;
    }
    *cp = v;
    *i += (size_t)len;
    return true;
}

/* Language codes and their scripts. */
static const struct {
    const char *codes; /* space-separated */
    unsigned scripts;
} languages[] = {
    {"af az bs ca cs cy da de en eo es et eu fi fil fr ga gl ha hr hu id is it la lt lv ms mt "
     "nb nl nn no pl pt ro sk sl sq sv sw tl tr uz vi xh yo zu",
     BIT(S_LATIN)},
    {"be bg kk ky mk mn ru sr tg uk", BIT(S_CYRILLIC)},
    {"el", BIT(S_GREEK)},
    {"hy", BIT(S_ARMENIAN)},
    {"ka", BIT(S_GEORGIAN)},
    {"he iw yi", BIT(S_HEBREW)},
    {"ar fa ps ug ur", BIT(S_ARABIC)},
    {"hi mr ne sa", BIT(S_DEVANAGARI)},
    {"as bn", BIT(S_BENGALI)},
    {"ta", BIT(S_TAMIL)},
    {"th", BIT(S_THAI)},
    {"ko", BIT(S_HANGUL)},
    {"zh", BIT(S_HAN)},
    {"ja", BIT(S_HAN) | BIT(S_HIRAGANA) | BIT(S_KATAKANA)},
};

/* The scripts of a language code ("en", "zh-CN", "pt_BR"); 0 when unknown. */
static unsigned language_scripts(const char *code)
{
    if (!code)
        return 0;
    char base[4];
    size_t n = 0;
    for (; code[n] && code[n] != '-' && code[n] != '_'; n++) {
        char c = code[n];
        if (n == 3 || !((c | 0x20) >= 'a' && (c | 0x20) <= 'z'))
            return 0;
        base[n] = (char)(c | 0x20);
    }
    if (n < 2)
        return 0;
    base[n] = '\0';
    if (code[n]) { /* a region or script suffix: letters, digits, '-' and '_' */
        if (!code[n + 1])
            return 0;
        for (const char *p = code + n + 1; *p; p++) {
            char c = *p;
            if (!((c | 0x20) >= 'a' && (c | 0x20) <= 'z') && !(c >= '0' && c <= '9') && c != '-' &&
                c != '_')
                return 0;
        }
    }
    for (size_t k = 0; k < N_OF(languages); k++) {
        for (const char *p = languages[k].codes; *p;) {
            size_t len = strcspn(p, " ");
            if (len == n && memcmp(p, base, n) == 0)
                return languages[k].scripts;
            p += len;
            while (*p == ' ')
                p++;
        }
    }
    return 0;
}

bool r1_reward_language_known(const char *code)
{
    return language_scripts(code) != 0;
}

struct word_count {
    size_t total, target;
    bool in_word, ok;
};

static void end_word(struct word_count *w)
{
    if (w->in_word) {
        w->total++;
        w->target += w->ok;
        w->in_word = false;
    }
}

static void count_words(const unsigned char *s, size_t n, unsigned target, struct word_count *w)
{
    size_t i = 0;
    while (i < n) {
        uint32_t cp;
        enum script script = S_INVALID;
        enum cls cls = utf8_next(s, n, &i, &cp) ? classify(cp, &script) : C_LETTER;
        switch (cls) {
        case C_SEP:
            end_word(w);
            break;
        case C_MARK:
            break;
        case C_LETTER:
            if (!w->in_word) {
                w->in_word = true;
                w->ok = true;
            }
            if (!(target & BIT(script)))
                w->ok = false;
            break;
        case C_SINGLE:
            end_word(w);
            w->total++;
            w->target += (target & BIT(script)) != 0;
            break;
        }
    }
    end_word(w);
}

double r1_reward_language(const struct r1_reward_input *in, const struct r1_reward_cfg *cfg)
{
    unsigned target = language_scripts(cfg ? cfg->language : "en");
    if (!target)
        return 0.0;
    char *s = r1_reward_effective_completion(in);
    if (!s)
        return 0.0;
    struct word_count w = {0};
    struct r1_reward_seg seg;
    size_t pos = 0;
    size_t n = strlen(s);
    bool thought = false; /* the thinking has something besides white space */
    while (r1_reward_next_seg(s, n, &pos, &seg))
        if (seg.kind == R1_SEG_THINK) {
            count_words((const unsigned char *)s + seg.begin, seg.end - seg.begin, target, &w);
            for (size_t i = seg.begin; i < seg.end && !thought; i++)
                thought = !strchr(" \t\r\n\v\f", s[i]);
        }
    free(s);
    /* Thinking without words (digits, symbols: "12+7 = 19") mixes no language. */
    if (!w.total)
        return thought ? 1.0 : 0.0;
    return (double)w.target / (double)w.total;
}
