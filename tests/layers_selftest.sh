#!/bin/sh
# Self test of tests/layers.py on tiny fake trees: a clean one must pass
# (comments, strings, member calls, macro bodies, struct tags and members
# that look like upward uses are not), and an upward include, an upward
# call, a read of a higher layer's global and an unlisted file must fail.
here=$(cd "$(dirname "$0")" && pwd) || exit 1
T=$(mktemp -d) || exit 1
trap 'rm -rf "$T"' 0
trap 'exit 1' HUP INT TERM
fail=0

mkdir "$T/clean" "$T/clean/src"
cd "$T/clean/src" || exit 1
cat >layers.map <<'X'
# layer name stems
0 low low
1 high high gone
X
cat >low.h <<'X'
#include <stddef.h>
int low_get(void);
X
cat >low.c <<'X'
#include "autoconfig.h"
#include "low.h"
#include "sluice_plugin.h"
#define UP() high_put(hub)
#define UP2(x) \
	high_put(x)
struct ops {
	void (*high_put)(int);
	int hub;
};
static int helper(void)
{
	return 1;
}
int low_get(void)
{
	struct ops o = { 0 }, *p = &o;
	struct hub *h = 0;
	/* high_put(hub) in a comment */
	const char *s = "high_put(hub) in a string";
	p->high_put(o.hub + p->hub); // high_put(hub)
	return helper() + (s != 0) + (h != 0);
}
X
cat >high.h <<'X'
#include "low.h"
extern int hub;
void high_put(int v);
X
cat >high.c <<'X'
#include "high.h"
int hub;
static int count;
void high_put(int v)
{
	hub = v + low_get() + count;
}
__attribute__((noinline)) int high_get(void)
{
	return hub;
}
X

# spoil TREE FILE TEXT: a copy of the clean tree with TEXT added to FILE
spoil() {
	cp -R "$T/clean" "$T/$1" && printf "$3" >>"$T/$1/src/$2" || exit 1
}
spoil include low.c '#include "high.h"\n'
spoil call low.c 'void low_up(void)\n{\n\thigh_put(1);\n\thigh_get();\n}\n'
spoil global low.c 'int low_peek(void)\n{\n\treturn hub;\n}\n'
spoil unlisted extra.c 'int extra;\n'

# expect TREE STATUS PATTERN: layers.py exits STATUS and prints PATTERN
expect() {
	out=$(/usr/bin/python3 "$here/layers.py" "$T/$1/src" 2>&1)
	rc=$?
	if [ "$rc" = "$2" ] && printf '%s\n' "$out" | grep -q -- "$3"; then
		echo "ok: $1"
	else
		echo "FAIL: $1: exit $rc (want $2), want a line like: $3"
		printf '%s\n' "$out"
		fail=1
	fi
}
expect clean 0 '^layers: ok$'
expect clean 0 '^layers: 4 files, 0 violations$'
expect include 1 '^src/low.c:24: includes high.h (layer 1 high) from layer 0 low$'
expect call 1 '^src/low.c:26: calls high_put() of src/high.c (layer 1 high) from layer 0 low$'
expect call 1 '^src/low.c:27: calls high_get() of src/high.c (layer 1 high) from layer 0 low$'
expect global 1 '^src/low.c:26: uses hub of src/high.c (layer 1 high) from layer 0 low$'
expect unlisted 1 '^src/extra.c: not listed in src/layers.map$'
exit $fail
