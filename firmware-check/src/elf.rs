//! Section sizes from a 32-bit little-endian ELF file (what `size -A` prints), read from the
//! section header table.

use std::fmt;

/// One section header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// Name from the section-name string table.
    pub name: String,
    /// Load address.
    pub addr: u32,
    /// Size in bytes (in memory: for `.bss` this is not in the file).
    pub size: u32,
}

/// Why an ELF file could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ElfError {
    /// Not an ELF file.
    NotElf,
    /// An ELF file, but not 32-bit little-endian.
    NotElf32Le,
    /// A header or table points past the end of the file.
    Truncated {
        /// What was being read.
        what: &'static str,
    },
    /// A section name is not valid UTF-8 or not terminated.
    BadName,
}

impl fmt::Display for ElfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ElfError::NotElf => write!(f, "not an ELF file (bad magic)"),
            ElfError::NotElf32Le => write!(f, "not a 32-bit little-endian ELF file"),
            ElfError::Truncated { what } => write!(f, "ELF file truncated while reading {what}"),
            ElfError::BadName => write!(f, "ELF section name is not terminated UTF-8"),
        }
    }
}

impl std::error::Error for ElfError {}

fn u16_at(b: &[u8], off: usize, what: &'static str) -> Result<u16, ElfError> {
    b.get(off..off + 2)
        .map(|s| u16::from_le_bytes([s[0], s[1]]))
        .ok_or(ElfError::Truncated { what })
}

fn u32_at(b: &[u8], off: usize, what: &'static str) -> Result<u32, ElfError> {
    b.get(off..off + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or(ElfError::Truncated { what })
}

/// The sections of an ELF32 little-endian file, in header order (the null section skipped).
pub fn sections(bytes: &[u8]) -> Result<Vec<Section>, ElfError> {
    if bytes.get(..4) != Some(b"\x7fELF".as_slice()) {
        return Err(ElfError::NotElf);
    }
    // EI_CLASS = ELFCLASS32, EI_DATA = ELFDATA2LSB.
    if bytes.get(4..6) != Some([1u8, 1].as_slice()) {
        return Err(ElfError::NotElf32Le);
    }
    let shoff = u32_at(bytes, 0x20, "e_shoff")? as usize;
    let shentsize = u16_at(bytes, 0x2E, "e_shentsize")? as usize;
    let shnum = u16_at(bytes, 0x30, "e_shnum")? as usize;
    let shstrndx = u16_at(bytes, 0x32, "e_shstrndx")? as usize;
    if shentsize < 40 {
        return Err(ElfError::Truncated {
            what: "section header entries",
        });
    }
    let header = |i: usize| shoff + i * shentsize;
    let strtab_off = u32_at(bytes, header(shstrndx) + 16, "section-name table")? as usize;
    let strtab_size = u32_at(bytes, header(shstrndx) + 20, "section-name table")? as usize;
    let strtab = bytes
        .get(strtab_off..strtab_off + strtab_size)
        .ok_or(ElfError::Truncated {
            what: "section-name table",
        })?;
    let mut out = Vec::with_capacity(shnum);
    for i in 1..shnum {
        let h = header(i);
        let name_off = u32_at(bytes, h, "section header")? as usize;
        let name_bytes = strtab.get(name_off..).ok_or(ElfError::BadName)?;
        let len = name_bytes
            .iter()
            .position(|&c| c == 0)
            .ok_or(ElfError::BadName)?;
        let name = std::str::from_utf8(&name_bytes[..len]).map_err(|_| ElfError::BadName)?;
        out.push(Section {
            name: name.to_owned(),
            addr: u32_at(bytes, h + 12, "section header")?,
            size: u32_at(bytes, h + 20, "section header")?,
        });
    }
    Ok(out)
}

/// Size of the section called `name`, 0 if there is none.
pub fn section_size(sections: &[Section], name: &str) -> u32 {
    sections
        .iter()
        .find(|s| s.name == name)
        .map_or(0, |s| s.size)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF32 LE file: null section, `.text` (0x1234 bytes at 0x400), `.shstrtab`.
    fn tiny_elf() -> Vec<u8> {
        let strtab = b"\0.text\0.shstrtab\0";
        let mut f = vec![0u8; 52];
        f[..4].copy_from_slice(b"\x7fELF");
        f[4] = 1;
        f[5] = 1;
        let strtab_off = f.len();
        f.extend_from_slice(strtab);
        let shoff = f.len();
        f[0x20..0x24].copy_from_slice(&(shoff as u32).to_le_bytes());
        f[0x2E..0x30].copy_from_slice(&40u16.to_le_bytes());
        f[0x30..0x32].copy_from_slice(&3u16.to_le_bytes());
        f[0x32..0x34].copy_from_slice(&2u16.to_le_bytes());
        let mut sh = |name: u32, addr: u32, off: u32, size: u32| {
            let mut h = [0u8; 40];
            h[0..4].copy_from_slice(&name.to_le_bytes());
            h[12..16].copy_from_slice(&addr.to_le_bytes());
            h[16..20].copy_from_slice(&off.to_le_bytes());
            h[20..24].copy_from_slice(&size.to_le_bytes());
            f.extend_from_slice(&h);
        };
        sh(0, 0, 0, 0);
        sh(1, 0x400, 0, 0x1234);
        sh(7, 0, strtab_off as u32, strtab.len() as u32);
        f
    }

    #[test]
    fn reads_names_and_sizes() {
        let s = sections(&tiny_elf()).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(
            s[0],
            Section {
                name: ".text".into(),
                addr: 0x400,
                size: 0x1234
            }
        );
        assert_eq!(s[1].name, ".shstrtab");
        assert_eq!(section_size(&s, ".text"), 0x1234);
        assert_eq!(section_size(&s, ".bss"), 0);
    }

    #[test]
    fn rejects_bad_files() {
        assert_eq!(sections(b"nope"), Err(ElfError::NotElf));
        let mut f = tiny_elf();
        f[4] = 2;
        assert_eq!(sections(&f), Err(ElfError::NotElf32Le));
        let f = tiny_elf();
        // Cut inside the file header, inside the name table, inside the last sh_size field.
        for len in [10, 40, 60, f.len() - 17] {
            assert!(sections(&f[..len]).is_err(), "truncated to {len}");
        }
    }
}
