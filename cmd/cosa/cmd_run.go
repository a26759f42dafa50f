package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/cosa-build/cosa/pkg/boottest"
	"github.com/cosa-build/cosa/pkg/compose"
	"github.com/cosa-build/cosa/pkg/platform"
	"github.com/cosa-build/cosa/pkg/qemu"
)

type runOptions struct {
	Build      string
	Platform   string
	UEFI, BIOS bool
	Memory     int
	CPUs       int
	Console    bool
}

func newRunCmd(g *globals) *cobra.Command {
	o := &runOptions{}
	c := &cobra.Command{
		Use:   "run [--build ID] [--platform qemu|metal] [--uefi|--bios] [-m MiB] [--smp N] [-c]",
		Short: "Boot a build in QEMU (a throwaway overlay; the image is never changed)",
		Example: `  cosa run -c                        # the latest build's qemu image, console here
  cosa run --build 12.20261122.dev.1 --bios
  cosa run --platform metal -m 4096 --smp 4`,
		Args: maxArgs(0),
		RunE: func(c *cobra.Command, args []string) error {
			if o.Platform != "qemu" && o.Platform != "metal" {
				return usageError{fmt.Errorf("--platform must be qemu or metal")}
			}
			w, d, id, err := g.openBuild(o.Build)
			if err != nil {
				return err
			}
			arch := compose.BaseArch()
			_, img, err := bootImage(c.Context(), d, id, arch, o.Platform)
			if err != nil {
				return err
			}
			fw := qemu.UEFI
			if o.BIOS {
				fw = qemu.BIOS
			}
			dir := filepath.Join(w.TmpDir(), "run", id)
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
			// The QMP socket path must fit in 108 bytes; workdirs can be deep.
			sockDir, err := os.MkdirTemp("", "cosa-qmp-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(sockDir)
			ctx := context.Background()
			ssh, err := qemu.NewSSH(ctx, dir)
			if err != nil {
				return err
			}
			sock := filepath.Join(sockDir, "qmp.sock")
			vm, err := qemu.Start(ctx, qemu.Options{Image: img, Firmware: fw, WorkDir: dir, MemoryMiB: o.Memory, CPUs: o.CPUs,
				Network: true, SSHPort: ssh.Port, AuthorizedKey: ssh.Key.Public, QMPSocket: sock, Interactive: o.Console})
			if err != nil {
				return err
			}
			sshCmd := strings.Join(ssh.Args(), " ")
			if o.Console {
				// The terminal belongs to the guest's serial console now;
				// QEMU's own escape (Ctrl-A X) ends it.
				signal.Ignore(os.Interrupt)
				fmt.Fprintf(g.Stderr, "Booting %s (%s, %s). Ctrl-A X quits; ssh: %s\n", id, filepath.Base(img), fw, sshCmd)
				return vm.Wait(ctx)
			}
			fmt.Fprintf(g.Stderr, "Booting %s (%s, %s); console log %s\n", id, filepath.Base(img), fw, vm.ConsoleLog)
			sigs := make(chan os.Signal, 1)
			signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
			defer signal.Stop(sigs)
			go func() {
				bctx, cancel := context.WithTimeout(ctx, boottest.BootTimeout)
				defer cancel()
				if _, err := vm.WaitFor(bctx, regexp.MustCompile(`login: `), boottest.FailRE); err != nil {
					fmt.Fprintf(g.Stderr, "boot problem: %v\n", err)
					return
				}
				g.note(fmt.Sprintf("Ready after %s. Log in with:\n  %s\nCtrl-C powers the guest off.", time.Since(vm.Started).Round(time.Second), sshCmd))
			}()
			select {
			case <-vm.Exited():
				err = vm.Wait(ctx)
			case <-sigs:
				err = shutdown(g, vm, sock)
			}
			if err != nil {
				return err
			}
			g.result("run", map[string]any{"build": id, "image": img, "firmware": string(fw), "ssh": sshCmd}, "")
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&o.Build, "build", "latest", "build id or tag")
	f.StringVar(&o.Platform, "platform", "qemu", "image to boot: qemu or metal")
	f.BoolVar(&o.UEFI, "uefi", false, "boot with UEFI (OVMF; the default)")
	f.BoolVar(&o.BIOS, "bios", false, "boot with BIOS (SeaBIOS)")
	f.IntVarP(&o.Memory, "memory", "m", 2048, "memory in MiB")
	f.IntVar(&o.CPUs, "smp", 2, "virtual CPUs")
	f.BoolVarP(&o.Console, "console", "c", false, "attach the serial console to this terminal")
	c.MarkFlagsMutuallyExclusive("uefi", "bios")
	c.RegisterFlagCompletionFunc("platform", completeWords(platform.Qemu, platform.Metal))
	return c
}

// shutdown asks the guest to power off through QMP, waits, then quits QEMU.
func shutdown(g *globals, vm *qemu.VM, sock string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	q, err := qemu.DialQMP(ctx, sock)
	if err != nil {
		vm.Kill()
		return fmt.Errorf("QMP: %w (QEMU killed)", err)
	}
	defer q.Close()
	fmt.Fprintln(g.Stderr, "Powering the guest off...")
	if err := q.SystemPowerdown(ctx); err != nil {
		vm.Kill()
		return err
	}
	wctx, wcancel := context.WithTimeout(ctx, 60*time.Second)
	defer wcancel()
	if err := vm.Wait(wctx); err == nil {
		return nil
	}
	q.Quit(ctx)
	vm.Wait(ctx)
	return nil
}
