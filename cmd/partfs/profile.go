package main

import (
	"log/slog"
	"os"
	"runtime/pprof"
)

// profileEnv names a file to write a CPU profile of the mount to, from mount
// to unmount (`make bench PROFILE=1` sets it).
const profileEnv = "PARTFS_CPUPROFILE"

// startProfile starts the CPU profile that profileEnv asks for and returns
// the function that ends it.
func startProfile(log *slog.Logger) func() {
	path := os.Getenv(profileEnv)
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err != nil {
		log.Error("cannot write the CPU profile", "file", path, "err", err)
		return func() {}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		log.Error("cannot start the CPU profile", "err", err)
		f.Close()
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			log.Error("cannot write the CPU profile", "file", path, "err", err)
		}
	}
}
