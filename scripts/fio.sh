#!/bin/sh
# fio.sh WORKDIR PARTFS S3UTIL FIOTABLE MINIO HOST PORT
#
# The body of `make fio`: starts a MinIO of its own on HOST:PORT (its
# console on PORT+1) with its data under WORKDIR, makes a bucket, and runs
# the fio jobs of bench/fio/, each on a fresh partfs mount of it at
# WORKDIR/mnt, so that every read is cold in partfs's block cache and in the
# kernel's page cache. The files the read jobs read are laid out first.
# Prints one table of fio's JSON reports (through FIOTABLE), then unmounts
# and stops MinIO, also when a step fails. The jobs' parameters come from
# the environment: SIZE (1G), RUNTIME (30s), NRFILES (500), SMALL_SIZE (4k).
set -eu
work=$1 partfs=$2 s3util=$3 fiotable=$4 minio=$5 host=$6 port=$7
jobs="seq_read rand_read seq_write ttfb_small create_small"
jobdir=$(cd "$(dirname "$0")/../bench/fio" && pwd)
mnt=$work/mnt

export FIO_DIR="$mnt" SIZE="${SIZE:-1G}" RUNTIME="${RUNTIME:-30s}" \
	NRFILES="${NRFILES:-500}" SMALL_SIZE="${SMALL_SIZE:-4k}"

command -v fio >/dev/null 2>&1 || { echo "make fio needs fio (apt-get install fio)" >&2; exit 1; }
if mountpoint -q "$mnt" 2>/dev/null; then
	echo "$mnt is still mounted: unmount it and run make fio again" >&2
	exit 1
fi
rm -rf "$work"
mkdir -p "$work/data" "$mnt" "$work/reports"

user=partfs-fio secret=partfs-fio-secret
export AWS_ACCESS_KEY_ID=$user AWS_SECRET_ACCESS_KEY=$secret AWS_REGION=us-east-1
endpoint=http://$host:$port
minio_pid="" partfs_pid="" failed=""

# unmount stops the partfs of the current mount: on SIGTERM it stores
# every file with unsaved changes, unmounts and exits, non-zero when a
# file could not be stored.
unmount() {
	[ -n "$partfs_pid" ] || return 0
	pid=$partfs_pid
	partfs_pid=""
	kill "$pid" 2>/dev/null || true
	if ! wait "$pid"; then
		echo "partfs exited with an error; its log: $work/partfs.log" >&2
		tail -n 20 "$work/partfs.log" >&2
		return 1
	fi
}

mount_fresh() {
	unmount || failed=1
	"$partfs" -f --endpoint "$endpoint" fio "$mnt" >>"$work/partfs.log" 2>&1 &
	partfs_pid=$!
	for _ in $(seq 300); do
		mountpoint -q "$mnt" && return 0
		kill -0 "$partfs_pid" 2>/dev/null || break
		sleep 0.1
	done
	echo "partfs did not mount $mnt; its log:" >&2
	tail -n 20 "$work/partfs.log" >&2
	exit 1
}

# still_mounted fails the run when partfs stopped while STEP ran (Ctrl-C
# stops it too): fio would go on in the directory under the mount.
still_mounted() {
	if ! kill -0 "$partfs_pid" 2>/dev/null || ! mountpoint -q "$mnt"; then
		echo "partfs stopped during $1; its log: $work/partfs.log" >&2
		tail -n 20 "$work/partfs.log" >&2
		exit 1
	fi
}

cleanup() {
	unmount || true
	if mountpoint -q "$mnt" 2>/dev/null; then
		umount "$mnt" 2>/dev/null || fusermount3 -u "$mnt" 2>/dev/null || umount -l "$mnt" || true
	fi
	if [ -n "$minio_pid" ] && kill -0 "$minio_pid" 2>/dev/null; then
		kill "$minio_pid"
		for _ in $(seq 50); do kill -0 "$minio_pid" 2>/dev/null || break; sleep 0.2; done
	fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "starting MinIO on $endpoint, data in $work/data"
MINIO_ROOT_USER=$user MINIO_ROOT_PASSWORD=$secret MINIO_BROWSER=off MINIO_UPDATE=off \
	"$minio" server --quiet --address "$host:$port" --console-address "$host:$((port + 1))" \
	"$work/data" >"$work/minio.log" 2>&1 </dev/null &
minio_pid=$!
"$s3util" -endpoint "$endpoint" wait || { cat "$work/minio.log"; exit 1; }
kill -0 "$minio_pid" 2>/dev/null || { echo "MinIO exited; is $host:$port in use?" >&2; cat "$work/minio.log"; exit 1; }
"$s3util" -endpoint "$endpoint" mb fio

echo "laying out the read jobs' files: one of $SIZE, $NRFILES of $SMALL_SIZE"
mount_fresh
for layout in seq_read ttfb_small; do
	fio --create_only=1 --eta=never "$jobdir/$layout.fio" >"$work/reports/$layout.layout.log" 2>&1 || {
		cat "$work/reports/$layout.layout.log" >&2
		exit 1
	}
	still_mounted "the layout of $layout"
done

reports=""
for job in $jobs; do
	mount_fresh
	echo "running $job (SIZE=$SIZE RUNTIME=$RUNTIME NRFILES=$NRFILES SMALL_SIZE=$SMALL_SIZE)"
	report=$work/reports/$job.json
	reports="$reports $report"
	if ! fio --output-format=json --output="$report" --eta=never "$jobdir/$job.fio" 2>"$work/reports/$job.err"; then
		echo "fio $job failed:" >&2
		cat "$work/reports/$job.err" >&2
		failed=1
	fi
	still_mounted "$job"
done
unmount || failed=1

echo
echo "$(fio --version), $("$partfs" --version | head -n 1), MinIO on $endpoint, $(nproc) CPUs"
# shellcheck disable=SC2086 # the reports are words
"$fiotable" $reports || failed=1
[ -z "$failed" ]
