//! A minimal writer of PyTorch `torch.save` zip checkpoints (pickle protocol 2,
//! stored zip entries), enough for candle's reader: lets the `.pth` loading
//! path be tested without PyTorch.

use candle_core::{DType, Tensor};

fn crc32(data: &[u8]) -> u32 {
    let mut table = [0u32; 256];
    for (i, t) in table.iter_mut().enumerate() {
        let mut c = i as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xEDB88320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
        *t = c;
    }
    let mut c = !0u32;
    for &b in data {
        c = table[((c ^ b as u32) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

fn zip(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, data) in entries {
        let offset = out.len() as u32;
        let crc = crc32(data);
        let head = |sig: u32, central: bool| {
            let mut h = Vec::new();
            h.extend(sig.to_le_bytes());
            if central {
                h.extend(20u16.to_le_bytes());
            }
            h.extend(20u16.to_le_bytes()); // version needed
            h.extend(0u16.to_le_bytes()); // flags
            h.extend(0u16.to_le_bytes()); // stored
            h.extend(0u16.to_le_bytes()); // time
            h.extend(0x21u16.to_le_bytes()); // date 1980-01-01
            h.extend(crc.to_le_bytes());
            h.extend((data.len() as u32).to_le_bytes());
            h.extend((data.len() as u32).to_le_bytes());
            h.extend((name.len() as u16).to_le_bytes());
            h.extend(0u16.to_le_bytes()); // extra
            if central {
                h.extend([0u8; 6]); // comment len, disk, internal attrs
                h.extend(0u32.to_le_bytes()); // external attrs
                h.extend(offset.to_le_bytes());
            }
            h.extend(name.as_bytes());
            h
        };
        out.extend(head(0x04034b50, false));
        out.extend(data);
        central.extend(head(0x02014b50, true));
    }
    let cd_offset = out.len() as u32;
    out.extend(&central);
    out.extend(0x06054b50u32.to_le_bytes());
    out.extend([0u8; 4]);
    out.extend((entries.len() as u16).to_le_bytes());
    out.extend((entries.len() as u16).to_le_bytes());
    out.extend((central.len() as u32).to_le_bytes());
    out.extend(cd_offset.to_le_bytes());
    out.extend(0u16.to_le_bytes());
    out
}

struct Pickle(Vec<u8>);

impl Pickle {
    fn str(&mut self, s: &str) {
        self.0.push(b'X');
        self.0.extend((s.len() as u32).to_le_bytes());
        self.0.extend(s.as_bytes());
    }
    fn int(&mut self, v: usize) {
        self.0.push(b'J');
        self.0.extend((v as i32).to_le_bytes());
    }
    fn global(&mut self, module: &str, name: &str) {
        self.0.push(b'c');
        self.0.extend(format!("{module}\n{name}\n").as_bytes());
    }
    fn tuple(&mut self, v: &[usize]) {
        self.0.push(b'(');
        for &x in v {
            self.int(x);
        }
        self.0.push(b't');
    }
    /// `_rebuild_tensor_v2(persistent storage, 0, size, stride, False, {})`.
    fn tensor(&mut self, storage: &str, class: &str, dims: &[usize]) {
        let n: usize = dims.iter().product();
        let mut strides = vec![1usize; dims.len()];
        for i in (0..dims.len().saturating_sub(1)).rev() {
            strides[i] = strides[i + 1] * dims[i + 1];
        }
        self.global("torch._utils", "_rebuild_tensor_v2");
        self.0.push(b'(');
        self.0.push(b'(');
        self.str("storage");
        self.global("torch", class);
        self.str(storage);
        self.str("cpu");
        self.int(n);
        self.0.push(b't');
        self.0.push(b'Q');
        self.int(0);
        self.tuple(dims);
        self.tuple(&strides);
        self.0.push(0x89); // False
        self.0.push(b'}');
        self.0.push(b't');
        self.0.push(b'R');
    }
}

/// Writes `tensors` (f32 or i64) like `torch.save(state_dict)`, or nested as
/// `{"meta": {}, "state_dict": state_dict}` when `nest` is given.
pub fn save_pth(path: &std::path::Path, tensors: &[(String, Tensor)], nest: Option<&str>) {
    let mut p = Pickle(vec![0x80, 2]);
    let mut files = Vec::new();
    if let Some(key) = nest {
        p.0.push(b'}');
        p.0.push(b'(');
        p.str("meta");
        p.0.push(b'}');
        p.str(key);
    }
    p.0.push(b'}');
    p.0.push(b'(');
    for (i, (name, t)) in tensors.iter().enumerate() {
        p.str(name);
        let (class, bytes): (&str, Vec<u8>) = match t.dtype() {
            DType::I64 => (
                "LongStorage",
                t.flatten_all()
                    .unwrap()
                    .to_vec1::<i64>()
                    .unwrap()
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect(),
            ),
            _ => (
                "FloatStorage",
                t.flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap()
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect(),
            ),
        };
        p.tensor(&i.to_string(), class, t.dims());
        files.push((format!("archive/data/{i}"), bytes));
    }
    p.0.push(b'u');
    if nest.is_some() {
        p.0.push(b'u');
    }
    p.0.push(b'.');
    let mut entries = vec![("archive/data.pkl".to_string(), p.0)];
    entries.extend(files);
    entries.push(("archive/version".to_string(), b"3\n".to_vec()));
    std::fs::write(path, zip(&entries)).unwrap();
}
