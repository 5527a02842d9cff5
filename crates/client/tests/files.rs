//! `sandbox.files` against a real `sandbank serve`.
mod common;

use bytes::Bytes;
use common::with_server;
use sandbank_client::files::ByteSource;
use sandbank_client::{Error, FileType, FilesystemOpts, WriteData, WriteEntry, WriteOpts};

fn fo() -> FilesystemOpts {
    FilesystemOpts::default()
}

#[test]
fn round_trips_and_errors() {
    with_server(|srv| async move {
        let sbx = srv.sandbox().await;
        let f = sbx.files();

        // Text.
        let w = f.write("/home/user/dir/a.txt", "héllo\n".into(), WriteOpts::default()).await.unwrap();
        assert_eq!(
            (w.name.as_str(), w.path.as_str(), w.file_type.as_deref()),
            ("a.txt", "/home/user/dir/a.txt", Some("file"))
        );
        assert_eq!(f.read_text("/home/user/dir/a.txt", fo()).await.unwrap(), "héllo\n");
        // Binary: every byte value, 1 MiB.
        let bin: Vec<u8> = (0..(1u32 << 20)).map(|i| (i % 256) as u8).collect();
        f.write("/tmp/bin", bin.clone().into(), WriteOpts::default()).await.unwrap();
        assert_eq!(f.read("/tmp/bin", fo()).await.unwrap(), Bytes::from(bin.clone()));
        // A streamed upload (chunked), and a streamed download.
        let chunks: Vec<std::io::Result<Bytes>> = bin.chunks(100_000).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
        let src: ByteSource = Box::pin(futures_util::stream::iter(chunks));
        f.write("/tmp/streamed", WriteData::Stream(src), WriteOpts::default()).await.unwrap();
        let mut s = f.read_stream("/tmp/streamed", fo()).await.unwrap();
        let mut got = Vec::new();
        while let Some(c) = s.next_chunk().await.unwrap() {
            got.extend_from_slice(&c);
        }
        assert_eq!(got, bin);
        // Empty file.
        f.write("/tmp/empty", Vec::new().into(), WriteOpts::default()).await.unwrap();
        assert_eq!(f.read_text("/tmp/empty", fo()).await.unwrap(), "");
        // Octet-stream upload.
        f.write("/tmp/oct", "raw".into(), WriteOpts { use_octet_stream: true, ..Default::default() }).await.unwrap();
        assert_eq!(f.read_text("/tmp/oct", fo()).await.unwrap(), "raw");
        // Multi-file form.
        let infos = f
            .write_files(
                vec![
                    WriteEntry { path: "/home/user/m/one".into(), data: "1".into() },
                    WriteEntry { path: "/home/user/m/two".into(), data: "22".into() },
                ],
                WriteOpts::default(),
            )
            .await
            .unwrap();
        let mut paths: Vec<_> = infos.iter().map(|i| i.path.clone()).collect();
        paths.sort();
        assert_eq!(paths, ["/home/user/m/one", "/home/user/m/two"]);
        assert_eq!(f.read_text("/home/user/m/two", fo()).await.unwrap(), "22");
        // Ownership follows the user.
        let info = f.get_info("/home/user/m/one", fo()).await.unwrap();
        assert_eq!((info.owner.as_str(), info.file_type, info.size), ("user", Some(FileType::File), 1));
        f.write("/root/r.txt", "r".into(), WriteOpts { user: Some("root".into()), ..Default::default() })
            .await
            .unwrap();
        assert_eq!(
            f.get_info("/root/r.txt", FilesystemOpts { user: Some("root".into()), ..fo() }).await.unwrap().owner,
            "root"
        );
        // An unknown user → envd's 401 → AuthenticationError.
        let e = f
            .write("/tmp/u.txt", "u".into(), WriteOpts { user: Some("nobody-here".into()), ..Default::default() })
            .await
            .unwrap_err();
        assert_eq!(e.kind(), "AuthenticationError", "{e:?}");

        // list with depth.
        let one = f.list("/home/user/m", None, fo()).await.unwrap();
        let mut names: Vec<_> = one.iter().map(|e| e.name.clone()).collect();
        names.sort();
        assert_eq!(names, ["one", "two"]);
        f.make_dir("/home/user/deep/a/b", fo()).await.unwrap();
        let d1 = f.list("/home/user/deep", Some(1), fo()).await.unwrap();
        assert_eq!(d1.len(), 1);
        assert_eq!(d1[0].file_type, Some(FileType::Dir));
        let d3 = f.list("/home/user/deep", Some(3), fo()).await.unwrap();
        assert_eq!(d3.len(), 2, "{d3:?}");
        assert_eq!(
            f.list("/home/user", Some(0), fo()).await.unwrap_err(),
            Error::InvalidArgument("depth should be at least one".into())
        );

        // exists, makeDir twice, rename, remove.
        assert!(f.exists("/home/user/dir/a.txt", fo()).await.unwrap());
        assert!(!f.exists("/home/user/dir/none", fo()).await.unwrap());
        assert!(f.make_dir("/home/user/newdir", fo()).await.unwrap());
        assert!(!f.make_dir("/home/user/newdir", fo()).await.unwrap());
        let moved = f.rename("/home/user/dir/a.txt", "/home/user/newdir/b.txt", fo()).await.unwrap();
        assert_eq!((moved.name.as_str(), moved.path.as_str()), ("b.txt", "/home/user/newdir/b.txt"));
        assert!(moved.modified_time.is_some());
        assert!(!f.exists("/home/user/dir/a.txt", fo()).await.unwrap());
        f.remove("/home/user/newdir", fo()).await.unwrap();
        assert!(!f.exists("/home/user/newdir/b.txt", fo()).await.unwrap());

        // Missing files → FileNotFoundError.
        let e = f.read("/home/user/missing.txt", fo()).await.unwrap_err();
        assert_eq!(e.kind(), "FileNotFoundError", "{e:?}");
        assert_eq!(f.get_info("/home/user/missing.txt", fo()).await.unwrap_err().kind(), "FileNotFoundError");
        assert_eq!(f.list("/home/user/missing", None, fo()).await.unwrap_err().kind(), "FileNotFoundError");
        let e = f.rename("/home/user/missing", "/home/user/x", fo()).await.unwrap_err();
        assert_eq!(e.kind(), "FileNotFoundError", "{e:?}");
        assert!(e.to_string().starts_with("[not_found]"), "{e}");
        sbx.kill().await.unwrap();
    });
}
