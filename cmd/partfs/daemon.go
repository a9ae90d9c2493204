package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"log/syslog"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

// In daemon mode the command re-executes itself in a new session. The child
// finds the write end of a pipe on fd 3, named by this environment variable,
// and reports there "ok" once the mount is live, or the error that stopped
// it. The parent exits only then, so `partfs … && ls MOUNTPOINT` works.
const daemonEnv = "PARTFS_DAEMON_READY_FD"

// readyTimeout bounds the parent's wait; the child's own steps are bounded
// well inside it (the bucket check takes at most 10s).
const readyTimeout = 60 * time.Second

// startDaemon runs the parent's side and returns the exit status.
func startDaemon(args []string) int {
	r, w, err := os.Pipe()
	if err != nil {
		return fail(err)
	}
	exe, err := os.Executable()
	if err != nil {
		return fail(err)
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), daemonEnv+"=3")
	cmd.ExtraFiles = []*os.File{w} // fd 3
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	// Stdin, Stdout and Stderr stay nil: /dev/null, so the daemon holds no
	// terminal.
	if err := cmd.Start(); err != nil {
		return fail(fmt.Errorf("start the mount process: %w", err))
	}
	w.Close()
	defer r.Close()

	r.SetReadDeadline(time.Now().Add(readyTimeout))
	line, readErr := bufio.NewReader(r).ReadString('\n')
	switch {
	case strings.HasPrefix(line, "ok"):
		cmd.Process.Release()
		return 0
	case strings.HasPrefix(line, "error "):
		cmd.Wait()
		return fail(errors.New(strings.TrimSpace(strings.TrimPrefix(line, "error "))))
	case errors.Is(readErr, os.ErrDeadlineExceeded):
		cmd.Process.Kill()
		cmd.Wait()
		return fail(fmt.Errorf("the mount did not come up within %s", readyTimeout))
	default:
		err := cmd.Wait()
		return fail(fmt.Errorf("the mount process exited before mounting (%v)", err))
	}
}

// runDaemonChild runs the child's side: mount, report, serve.
func runDaemonChild(cfg *config) int {
	ready := os.NewFile(3, "ready")
	os.Unsetenv(daemonEnv)
	report := func(msg string) {
		fmt.Fprintln(ready, msg)
		ready.Close()
	}
	// The session has no terminal, but a hangup from a parent shell must
	// not end the mount.
	signal.Ignore(syscall.SIGHUP)
	if err := os.Chdir("/"); err != nil {
		report("error " + oneLine(err))
		return 1
	}
	log := daemonLogger(cfg)
	signals := catchSignals()
	m, err := mount(context.Background(), cfg, log)
	if err != nil {
		log.Error("mount failed", "err", err)
		report("error " + oneLine(err))
		return 1
	}
	report("ok")
	return m.serve(signals)
}

// daemonLogger logs to syslog, the one place a detached process can be
// heard; without a syslog daemon the messages are dropped.
func daemonLogger(cfg *config) *slog.Logger {
	level := slog.LevelInfo
	if cfg.Debug {
		level = slog.LevelDebug
	}
	w, err := syslog.New(syslog.LOG_DAEMON|syslog.LOG_INFO, "partfs")
	if err != nil {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

// isDaemonChild reports whether this process is the re-executed child.
func isDaemonChild() bool { return os.Getenv(daemonEnv) != "" }
