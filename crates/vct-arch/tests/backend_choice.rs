//! Choosing the kernel backend in code: `KernelBackend::enter()` (a guard) and
//! `with_backend` (a closure), both re-exported by vct-arch. A whole model's
//! forward agrees under stock candle ops and the Rust kernels, and the previous
//! backend is back when the guard is dropped.

use candle_core::{Device, Tensor};
use vct_arch::{kernel_backend, with_backend, Arch, Classifier, KernelBackend, ModelConfig};

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

fn input(n: usize, side: usize) -> Tensor {
    let len = n * 3 * side * side;
    let v: Vec<f32> = (0..len)
        .map(|i| ((i as f32 * 0.618_034).fract() - 0.5) * 3.0)
        .collect();
    Tensor::from_vec(v, (n, 3, side, side), &Device::Cpu).unwrap()
}

#[test]
fn backend_guard_switches_kernels_and_restores_the_previous_one() {
    let before = kernel_backend();
    let x = input(2, 64);
    for arch in [Arch::ResNet50, Arch::BnInception] {
        let model = Classifier::new(&ModelConfig::new(arch, 10), &Device::Cpu).unwrap();
        let stock = {
            let _guard = KernelBackend::Candle.enter();
            assert_eq!(kernel_backend(), KernelBackend::Candle);
            let y = model.forward(&x, false).unwrap();
            {
                // Guards nest: the inner one restores the outer one's choice.
                let _inner = KernelBackend::Rust.enter();
                assert_eq!(kernel_backend(), KernelBackend::Rust);
            }
            assert_eq!(kernel_backend(), KernelBackend::Candle);
            y
        };
        assert_eq!(kernel_backend(), before);
        let rust = {
            let _guard = KernelBackend::Rust.enter();
            model.forward(&x, false).unwrap()
        };
        assert_eq!(kernel_backend(), before);
        let (a, b) = (values(&stock), values(&rust));
        let scale = a.iter().fold(0f32, |m, v| m.max(v.abs()));
        let diff = a
            .iter()
            .zip(&b)
            .fold(0f32, |m, (p, q)| m.max((p - q).abs()));
        assert!(
            diff <= 1e-4 * scale,
            "{arch}: stock vs rust kernels differ by {diff} (scale {scale})"
        );
        // Different summation orders: bitwise equality would mean one backend ran twice.
        assert_ne!(a, b, "{arch}: the guard did not change the backend");
        // The closure form is the same switch.
        let closure = with_backend(KernelBackend::Candle, || model.forward(&x, false).unwrap());
        assert_eq!(values(&closure), a, "{arch}");
        assert_eq!(kernel_backend(), before);
    }
}

#[test]
fn a_guard_holds_for_its_thread_only() {
    let default = std::thread::spawn(kernel_backend).join().unwrap();
    // Whatever VCT_KERNEL_BACKEND made the default, guard another backend.
    let chosen = if default == KernelBackend::Candle {
        KernelBackend::Rust
    } else {
        KernelBackend::Candle
    };
    let _guard = chosen.enter();
    let other = std::thread::spawn(kernel_backend).join().unwrap();
    assert_eq!(kernel_backend(), chosen);
    assert_eq!(other, default, "the guard leaked to another thread");
}
