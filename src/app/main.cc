#include "app/cli.h"

int main(int argc, char** argv) { return orderflow::app::run_cli(argc, argv); }
