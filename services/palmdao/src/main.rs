fn main() -> std::process::ExitCode {
    palm_service::run(palmdao::SERVICE, palmdao::run)
}
