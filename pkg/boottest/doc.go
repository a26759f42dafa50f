// Package boottest proves images by booting them, in the spirit of
// coreos-assembler's kola but without KVM: it boots a build's image under
// QEMU (TCG when there is no KVM), watches the serial console for kernel
// panics, emergency mode and failed units (stopping the VM at once when the
// console says the boot cannot succeed: LostRE), waits for multi-user and a
// login prompt, then runs the config's tests (executables from src/config/tests)
// inside the guest over SSH, with a key handed to the guest as a systemd
// credential so the image itself is never changed.
package boottest
