fn main() -> std::process::ExitCode {
    palm_service::run(palmvalidator::SERVICE, palmvalidator::run)
}
