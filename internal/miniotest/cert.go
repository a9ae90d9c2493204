package miniotest

import (
	"os"
	"path/filepath"

	"github.com/partfs/partfs/internal/testcert"
)

// writeCert writes a self-signed certificate for 127.0.0.1 and localhost as
// public.crt and private.key into certsDir, the names MinIO looks for, and
// returns the certificate's path for clients to trust.
func writeCert(certsDir string) (string, error) {
	certPEM, keyPEM, err := testcert.Loopback("127.0.0.1")
	if err != nil {
		return "", err
	}
	crt := filepath.Join(certsDir, "public.crt")
	if err := os.WriteFile(crt, certPEM, 0o600); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(certsDir, "private.key"), keyPEM, 0o600); err != nil {
		return "", err
	}
	return crt, nil
}
