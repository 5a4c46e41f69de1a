fn main() -> std::process::ExitCode {
    palm_service::run(palmvalidator_discord::SERVICE, palmvalidator_discord::run)
}
