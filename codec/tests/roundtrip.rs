//! Round trips through the real bitstream with a seeded random model on the ndarray backend.

use burn::backend::NdArray;
use burn::tensor::backend::Backend;
use codec::compress::Codec;
use codec::image_io::Planar;
use codec::model::Model;
use codec::weights::ModelFile;

type B = NdArray;

fn random_model() -> ModelFile {
    B::seed(&Default::default(), 7);
    ModelFile::from_model(&Model::<B>::new(&Default::default()))
}

fn test_image(w: u32, h: u32) -> Planar {
    let n = (w * h) as usize;
    let mut rgb = vec![0.0; 3 * n];
    for c in 0..3 {
        for i in 0..n {
            let (x, y) = ((i % w as usize) as f32, (i / w as usize) as f32);
            rgb[c * n + i] = 0.5 + 0.4 * ((x * 0.3 + c as f32).sin() * (y * 0.17).cos());
        }
    }
    Planar { width: w, height: h, channels: 3, bit_depth: 8, rgb }
}

#[test]
fn round_trip_reproduces_latents() {
    let codec = Codec::<B>::new(random_model(), Default::default()).unwrap();
    for (w, h) in [(1, 1), (17, 33), (64, 64)] {
        let img = test_image(w, h);
        let t = std::time::Instant::now();
        let (bytes, latents) = codec.compress_with_latents(&img, 4.0).unwrap();
        let enc = t.elapsed();
        let t = std::time::Instant::now();
        let (out, decoded) = codec.decompress_with_latents(&bytes).unwrap();
        eprintln!("{w}x{h}: {} bytes, encode {enc:?}, decode {:?}", bytes.len(), t.elapsed());
        assert_eq!(decoded, latents);
        assert_eq!((out.width, out.height), (w, h));
        // Re-encoding the same image gives the same bytes.
        assert_eq!(codec.compress(&img, 4.0).unwrap(), bytes);
    }
}
