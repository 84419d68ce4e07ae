//! Elapsed time from the MPS2 board's CMSDK APB timer 0 (base `0x4000_0000`, clocked at the
//! board's 25 MHz), read before and after the work it measures. Under QEMU with `-icount`
//! the guest's clock advances by a fixed amount per executed instruction, so the timer counts
//! instructions: [`calibrate`] times a loop of a known number of instructions, which turns
//! ticks into instructions on the host without assuming QEMU's clock rates.
//!
//! The counter is 32 bits wide and counts down from `u32::MAX` without interrupts: it wraps
//! after 2³² ticks (about 1.7·10¹¹ instructions at `-icount shift=0`), far more than a sample.

/// CMSDK APB timer 0 of the MPS2 board.
const TIMER0: usize = 0x4000_0000;
/// Control register: bit 0 enables the counter.
const CTRL: usize = TIMER0;
/// Current value (counts down).
const VALUE: usize = TIMER0 + 0x04;
/// Value loaded when the counter reaches zero.
const RELOAD: usize = TIMER0 + 0x08;

/// Starts the timer counting down from `u32::MAX`.
pub fn start() {
    // SAFETY: TIMER0's registers are word-sized device registers at fixed addresses of the
    // MPS2 memory map; nothing else in the firmware touches them.
    unsafe {
        core::ptr::write_volatile(CTRL as *mut u32, 0);
        core::ptr::write_volatile(RELOAD as *mut u32, u32::MAX);
        core::ptr::write_volatile(VALUE as *mut u32, u32::MAX);
        core::ptr::write_volatile(CTRL as *mut u32, 1);
    }
}

/// Ticks since [`start`] (wrapping at 2³²).
#[inline(never)]
pub fn now() -> u32 {
    // SAFETY: as in `start`; reading VALUE has no side effect.
    let v = unsafe { core::ptr::read_volatile(VALUE as *const u32) };
    u32::MAX - v
}

/// Iterations of the calibration loops: the short and the long one.
pub const CALIBRATION_ITERATIONS: [u32; 2] = [100_000, 1_100_000];
/// Instructions of one iteration of the calibration loop (`subs` and `bne`).
pub const INSTRUCTIONS_PER_ITERATION: u32 = 2;

/// Ticks of [`CALIBRATION_ITERATIONS`]'s two loops: their difference is the ticks of
/// `(long − short) · INSTRUCTIONS_PER_ITERATION` instructions, free of the cost of reading the
/// timer.
pub fn calibrate() -> [u32; 2] {
    CALIBRATION_ITERATIONS.map(|n| {
        let t0 = now();
        spin(n);
        now().wrapping_sub(t0)
    })
}

/// Exactly `2·n` instructions (for `n ≥ 1`).
#[inline(never)]
fn spin(n: u32) {
    // SAFETY: a register-only loop: it touches no memory and no stack.
    unsafe {
        core::arch::asm!(
            "2:",
            "subs {n}, {n}, #1",
            "bne 2b",
            n = inout(reg) n => _,
            options(nomem, nostack),
        );
    }
}
