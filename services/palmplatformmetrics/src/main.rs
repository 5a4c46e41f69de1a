fn main() -> std::process::ExitCode {
    palm_service::run(palmplatformmetrics::SERVICE, palmplatformmetrics::run)
}
