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

/// Writes `tensors` (f32) in PyTorch's legacy (pre-1.6) `torch.save` format:
/// the format of older checkpoints such as pretrainedmodels' BN-Inception.
/// Tensors use `_rebuild_tensor` (v1); the state dict carries `_metadata` as a
/// BUILD, as torch 0.4 wrote it. Tensors named in `transposed` are stored as a
/// non-contiguous view (storage holds the transpose) to exercise strides.
pub fn save_legacy_pth(path: &std::path::Path, tensors: &[(String, Tensor)], transposed: &[&str]) {
    let mut out = vec![
        0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, b'.',
    ];
    out.extend([0x80, 0x02, b'M', 0xe9, 0x03, b'.']);
    let mut info = Pickle(vec![0x80, 2, b'}', b'(']);
    info.str("protocol_version");
    info.int(1001);
    info.str("little_endian");
    info.0.push(0x88);
    info.0.extend([b'u', b'.']);
    out.extend(info.0);
    let mut p = Pickle(vec![0x80, 2]);
    p.global("collections", "OrderedDict");
    p.0.extend([b')', b'R', b'(']);
    let mut storages = Vec::new();
    for (i, (name, t)) in tensors.iter().enumerate() {
        let key = format!("{}", 94000000 + i);
        let dims = t.dims().to_vec();
        let (data, stride): (Vec<f32>, Vec<usize>) =
            if transposed.contains(&name.as_str()) && dims.len() == 2 {
                (
                    t.t()
                        .unwrap()
                        .contiguous()
                        .unwrap()
                        .flatten_all()
                        .unwrap()
                        .to_vec1()
                        .unwrap(),
                    vec![1, dims[0]],
                )
            } else {
                let mut s = vec![1usize; dims.len()];
                for d in (0..dims.len().saturating_sub(1)).rev() {
                    s[d] = s[d + 1] * dims[d + 1];
                }
                (t.flatten_all().unwrap().to_vec1().unwrap(), s)
            };
        p.str(name);
        p.global("torch._utils", "_rebuild_tensor");
        p.0.push(b'(');
        p.0.push(b'(');
        p.str("storage");
        p.global("torch", "FloatStorage");
        p.str(&key);
        p.str("cpu");
        p.int(data.len());
        p.0.push(b'N');
        p.0.push(b't');
        p.0.push(b'Q');
        p.int(0);
        p.tuple(&dims);
        p.tuple(&stride);
        p.0.extend([b't', b'R']);
        storages.push((key, data));
    }
    p.0.push(b'u');
    p.0.extend([b'}', b'(']);
    p.str("_metadata");
    p.0.extend([b'}', b'u', b'b', b'.']);
    out.extend(p.0);
    storages.sort_by(|a, b| a.0.cmp(&b.0));
    let mut keys = Pickle(vec![0x80, 2, b']', b'(']);
    for (k, _) in &storages {
        keys.str(k);
    }
    keys.0.extend([b'e', b'.']);
    out.extend(keys.0);
    for (_, data) in &storages {
        out.extend((data.len() as u64).to_le_bytes());
        for v in data {
            out.extend(v.to_le_bytes());
        }
    }
    std::fs::write(path, out).unwrap();
}
