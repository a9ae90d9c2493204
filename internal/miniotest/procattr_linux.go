package miniotest

import (
	"os/exec"
	"syscall"
)

// setProcAttr has the kernel kill the server if the test binary dies
// without running its cleanups (a timeout panic, a kill), so no server
// outlives its tests.
func setProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
