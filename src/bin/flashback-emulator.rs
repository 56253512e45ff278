#![forbid(unsafe_code)]

fn main() {
    eprintln!("flashback-emulator: not built yet");
    std::process::exit(1);
}
