// The orderflow binary's command line: subcommands and their flags.
#pragma once

namespace orderflow::app {

// Parses argv, runs the chosen subcommand and returns the process exit code.
int run_cli(int argc, char** argv);

}  // namespace orderflow::app
