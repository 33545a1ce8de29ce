//! covermap vision: what is in a camera frame, and what must never be published of it.
//!
//! It will own decoding and resizing frames, the ONNX privacy models (faces, licence plates) and
//! the blur they drive, the frame-quality model with its reason codes, and perceptual hashes.
//! No HTTP and no SQL: frames in, verdicts and blurred frames out.
//!
//! Camera drives are accepted and their frames geotagged and stored (`frames` rows, the raw
//! JPEG under its sha256), but nothing publishes a frame yet: publication waits for this crate's
//! blur and quality verdict, so no unblurred frame is ever served.
