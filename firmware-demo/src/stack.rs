//! Stack high-water mark by painting: fill the unused stack with a pattern at start, then find
//! the deepest word that no longer holds it.
//!
//! cortex-m-rt's link.x puts the stack at the top of RAM (`_stack_start`, growing down) and
//! ends it where `.bss`/`.uninit` end (`_stack_end`), so the stack gets all of RAM that the
//! statics leave.

use core::arch::asm;

/// The fill pattern; an odd, unlikely value for a pointer, a count or an f32.
const PAINT: u32 = 0xC5AC_C5AC;

/// `(_stack_end, _stack_start)`: the lowest address the stack may reach and its top.
fn bounds() -> (*mut u32, *mut u32) {
    let (bottom, top): (usize, usize);
    // SAFETY: the instructions only load two link-time addresses defined by cortex-m-rt's
    // link.x into registers; they touch no memory, no stack and no flags.
    unsafe {
        asm!(
            "movw {bottom}, #:lower16:_stack_end",
            "movt {bottom}, #:upper16:_stack_end",
            "movw {top}, #:lower16:_stack_start",
            "movt {top}, #:upper16:_stack_start",
            bottom = out(reg) bottom,
            top = out(reg) top,
            options(pure, nomem, nostack, preserves_flags),
        );
    }
    (bottom as *mut u32, top as *mut u32)
}

/// Paints the stack from its lowest address up to the current stack pointer. Call it first
/// thing in `main`, before interrupts are enabled. Returns the number of bytes painted.
///
/// The loop is one asm block that reads SP itself: Rust code that read SP and then wrote below
/// it could see the compiler push a frame there in between (shrink-wrapped prologues do).
pub fn paint() -> usize {
    let (bottom, _) = bounds();
    let end: usize;
    // SAFETY: the loop writes whole words from `_stack_end` (word aligned, link.x asserts it)
    // up to, not including, SP read inside the same block: RAM reserved for the stack and below
    // every live frame, since the compiler's own stack use lies above SP. Interrupts are not
    // enabled yet, so no exception frame can be pushed there while we write.
    unsafe {
        asm!(
            "mov {end}, sp",
            "bic {end}, {end}, #3",
            "2:",
            "cmp {p}, {end}",
            "bhs 3f",
            "str {pattern}, [{p}], #4",
            "b 2b",
            "3:",
            p = inout(reg) bottom => _,
            end = out(reg) end,
            pattern = in(reg) PAINT,
            options(nostack),
        );
    }
    end.saturating_sub(bottom as usize)
}

/// The stack's size and its high-water mark, in bytes.
#[derive(Debug, Clone, Copy)]
pub struct StackUsage {
    /// Bytes from `_stack_end` to `_stack_start`.
    pub size: usize,
    /// Bytes from the top down to the deepest word that lost the paint.
    pub high_water: usize,
}

impl StackUsage {
    /// True when even the lowest word lost its paint: the stack probably ran into the statics.
    pub fn exhausted(&self) -> bool {
        self.high_water >= self.size
    }
}

/// Scans the painted stack from its lowest address up for the first word that changed.
pub fn usage() -> StackUsage {
    let (bottom, top) = bounds();
    let mut p = bottom as *const u32;
    // SAFETY: every address read is word aligned and inside [_stack_end, _stack_start), RAM
    // that belongs to the stack; reading it (painted or used) has no side effects.
    unsafe {
        while p < top as *const u32 && p.read_volatile() == PAINT {
            p = p.add(1);
        }
    }
    StackUsage {
        size: top as usize - bottom as usize,
        high_water: top as usize - p as usize,
    }
}
