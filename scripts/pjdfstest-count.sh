#!/bin/sh
# pjdfstest-count.sh PJDFSTEST_DIR DIR GROUP...
#
# Runs the pjdfstest groups named from inside DIR (a partfs mount), one test
# file at a time, and prints for each group the assertions passed out of
# those planned, then the total. A test file that dies early counts all its
# planned assertions that did not print "ok" as failed; failures the suite
# marks TODO count as passed, as prove counts them. Files with failures
# are listed with their failing assertion numbers.
set -u
pjd=$1 dir=$2
shift 2
total_pass=0 total_plan=0
failed_files=""
cd "$dir" || exit 1
for group in "$@"; do
	gpass=0 gplan=0
	for t in "$pjd"/tests/"$group"/*.t; do
		out=$(timeout 600 prove -v "$t" 2>&1)
		plan=$(printf '%s\n' "$out" | sed -n 's/^1\.\.\([0-9][0-9]*\).*/\1/p' | head -n 1)
		# As in TAP, a failed assertion marked TODO (one the suite expects
		# to fail on this operating system) is not a failure.
		pass=$(printf '%s\n' "$out" | grep -c -E '^ok |^not ok [0-9]+ # TODO')
		plan=${plan:-0}
		gpass=$((gpass + pass)) gplan=$((gplan + plan))
		if [ "$pass" -ne "$plan" ]; then
			nots=$(printf '%s\n' "$out" | grep -v '# TODO' | sed -n 's/^not ok \([0-9][0-9]*\).*/\1/p' | tr '\n' ' ')
			failed_files="$failed_files
  $group/$(basename "$t"): $pass/$plan; not ok: ${nots:-(stopped early)}"
		fi
	done
	total_pass=$((total_pass + gpass)) total_plan=$((total_plan + gplan))
	printf '%-10s %5d/%-5d %5.1f %%\n' "$group" "$gpass" "$gplan" "$(echo "$gpass $gplan" | awk '{ if ($2 > 0) print 100 * $1 / $2; else print 0 }')"
done
printf '%-10s %5d/%-5d %5.1f %%\n' total "$total_pass" "$total_plan" "$(echo "$total_pass $total_plan" | awk '{ if ($2 > 0) print 100 * $1 / $2; else print 0 }')"
if [ -n "$failed_files" ]; then
	echo "files with failures:$failed_files"
fi
