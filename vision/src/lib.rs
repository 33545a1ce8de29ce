//! covermap vision: what is in a camera frame, and what must never be published of it.
//!
//! It will own decoding and resizing frames, the ONNX privacy models (faces, licence plates) and
//! the blur they drive, the frame-quality model with its reason codes, and perceptual hashes.
//! No HTTP and no SQL: frames in, verdicts and blurred frames out.
//!
//! Camera uploads are not accepted yet (`UploadKind` has no frame kinds), so nothing in the
//! pipeline calls this crate: no frame can reach publication without passing through it once it
//! does.
