#!/usr/bin/env bash
# The alert rules are valid and each alert fires (and stays quiet) as its test case says.
set -euo pipefail
cd "$(dirname "$0")/../../deploy/prometheus"
promtool check rules alerts.yml
promtool test rules alerts_test.yml
