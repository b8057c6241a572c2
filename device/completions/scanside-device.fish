# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_scanside_device_global_optspecs
    string join \n h/help V/version
end

function __fish_scanside_device_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_scanside_device_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_scanside_device_using_subcommand
    set -l cmd (__fish_scanside_device_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c scanside-device -n "__fish_scanside_device_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c scanside-device -n "__fish_scanside_device_needs_command" -s V -l version -d 'Print version'
complete -c scanside-device -n "__fish_scanside_device_needs_command" -f -a "classify" -d 'Classify image files (same result lines as `scanside classify`)'
complete -c scanside-device -n "__fish_scanside_device_needs_command" -f -a "log" -d 'Print the audit log; a torn or damaged record is reported and skipped'
complete -c scanside-device -n "__fish_scanside_device_needs_command" -f -a "run" -d 'The appliance loop: button, LEDs, inbox, audit log'
complete -c scanside-device -n "__fish_scanside_device_needs_command" -f -a "export" -d 'Write the audit records since a time, with the archived scans and overlays they refer to, to one bundle file for the host. Changes nothing on the device'
complete -c scanside-device -n "__fish_scanside_device_needs_command" -f -a "model" -d 'Install a new model, roll back to the previous one, or show both. The configured `model` path becomes a link swapped atomically; a running appliance switches within seconds and records the change'
complete -c scanside-device -n "__fish_scanside_device_needs_command" -f -a "config" -d 'Check the configuration without starting the box: exit 0 and a summary if it is valid, 78 (EX_CONFIG) with the reason if not'
complete -c scanside-device -n "__fish_scanside_device_needs_command" -f -a "completions" -d 'Print a shell completion script (bash, zsh, fish, elvish, powershell); the .deb installs bash, zsh and fish ones'
complete -c scanside-device -n "__fish_scanside_device_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c scanside-device -n "__fish_scanside_device_using_subcommand classify" -l model -d 'Model file [default: the shipped model]' -r -F
complete -c scanside-device -n "__fish_scanside_device_using_subcommand classify" -l format -d 'Result lines: readable text, one JSON object per line, or CSV with a header row' -r -f -a "text\t''
json\t''
csv\t''"
complete -c scanside-device -n "__fish_scanside_device_using_subcommand classify" -l frame -d 'Frame of multi-frame DICOM objects to classify, counting from 0 [default: the middle one]' -r
complete -c scanside-device -n "__fish_scanside_device_using_subcommand classify" -l json -d 'Same as `--format json`'
complete -c scanside-device -n "__fish_scanside_device_using_subcommand classify" -s h -l help -d 'Print help'
complete -c scanside-device -n "__fish_scanside_device_using_subcommand log" -l json -d 'One JSON object per record'
complete -c scanside-device -n "__fish_scanside_device_using_subcommand log" -s h -l help -d 'Print help'
complete -c scanside-device -n "__fish_scanside_device_using_subcommand run" -l config -d 'Configuration file' -r -F
complete -c scanside-device -n "__fish_scanside_device_using_subcommand run" -s h -l help -d 'Print help'
complete -c scanside-device -n "__fish_scanside_device_using_subcommand export" -l config -d 'Configuration file (where the audit log and archive are)' -r -F
complete -c scanside-device -n "__fish_scanside_device_using_subcommand export" -l since -d 'Records from this time on: milliseconds since 1970, or a UTC date YYYY-MM-DD [default: everything]' -r
complete -c scanside-device -n "__fish_scanside_device_using_subcommand export" -l out -d 'The bundle file to write' -r -F
complete -c scanside-device -n "__fish_scanside_device_using_subcommand export" -s h -l help -d 'Print help'
complete -c scanside-device -n "__fish_scanside_device_using_subcommand model; and not __fish_seen_subcommand_from install rollback status help" -l config -d 'Configuration file (where the model link is)' -r -F
complete -c scanside-device -n "__fish_scanside_device_using_subcommand model; and not __fish_seen_subcommand_from install rollback status help" -s h -l help -d 'Print help'
complete -c scanside-device -n "__fish_scanside_device_using_subcommand model; and not __fish_seen_subcommand_from install rollback status help" -f -a "install" -d 'Check a model file (manifest, tract, one inference) and put it in service; the current model becomes the previous one'
complete -c scanside-device -n "__fish_scanside_device_using_subcommand model; and not __fish_seen_subcommand_from install rollback status help" -f -a "rollback" -d 'Put the previous model back in service (checked first)'
complete -c scanside-device -n "__fish_scanside_device_using_subcommand model; and not __fish_seen_subcommand_from install rollback status help" -f -a "status" -d 'Show the current and previous model'
complete -c scanside-device -n "__fish_scanside_device_using_subcommand model; and not __fish_seen_subcommand_from install rollback status help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c scanside-device -n "__fish_scanside_device_using_subcommand model; and __fish_seen_subcommand_from install" -l config -d 'Configuration file (where the model link is)' -r -F
complete -c scanside-device -n "__fish_scanside_device_using_subcommand model; and __fish_seen_subcommand_from install" -s h -l help -d 'Print help'
complete -c scanside-device -n "__fish_scanside_device_using_subcommand model; and __fish_seen_subcommand_from rollback" -l config -d 'Configuration file (where the model link is)' -r -F
complete -c scanside-device -n "__fish_scanside_device_using_subcommand model; and __fish_seen_subcommand_from rollback" -s h -l help -d 'Print help'
complete -c scanside-device -n "__fish_scanside_device_using_subcommand model; and __fish_seen_subcommand_from status" -l config -d 'Configuration file (where the model link is)' -r -F
complete -c scanside-device -n "__fish_scanside_device_using_subcommand model; and __fish_seen_subcommand_from status" -s h -l help -d 'Print help'
complete -c scanside-device -n "__fish_scanside_device_using_subcommand model; and __fish_seen_subcommand_from help" -f -a "install" -d 'Check a model file (manifest, tract, one inference) and put it in service; the current model becomes the previous one'
complete -c scanside-device -n "__fish_scanside_device_using_subcommand model; and __fish_seen_subcommand_from help" -f -a "rollback" -d 'Put the previous model back in service (checked first)'
complete -c scanside-device -n "__fish_scanside_device_using_subcommand model; and __fish_seen_subcommand_from help" -f -a "status" -d 'Show the current and previous model'
complete -c scanside-device -n "__fish_scanside_device_using_subcommand model; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c scanside-device -n "__fish_scanside_device_using_subcommand config; and not __fish_seen_subcommand_from check help" -s h -l help -d 'Print help'
complete -c scanside-device -n "__fish_scanside_device_using_subcommand config; and not __fish_seen_subcommand_from check help" -f -a "check" -d 'Parse and validate a configuration file'
complete -c scanside-device -n "__fish_scanside_device_using_subcommand config; and not __fish_seen_subcommand_from check help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c scanside-device -n "__fish_scanside_device_using_subcommand config; and __fish_seen_subcommand_from check" -l config -d 'Configuration file' -r -F
complete -c scanside-device -n "__fish_scanside_device_using_subcommand config; and __fish_seen_subcommand_from check" -s h -l help -d 'Print help'
complete -c scanside-device -n "__fish_scanside_device_using_subcommand config; and __fish_seen_subcommand_from help" -f -a "check" -d 'Parse and validate a configuration file'
complete -c scanside-device -n "__fish_scanside_device_using_subcommand config; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c scanside-device -n "__fish_scanside_device_using_subcommand completions" -s h -l help -d 'Print help'
complete -c scanside-device -n "__fish_scanside_device_using_subcommand help; and not __fish_seen_subcommand_from classify log run export model config completions help" -f -a "classify" -d 'Classify image files (same result lines as `scanside classify`)'
complete -c scanside-device -n "__fish_scanside_device_using_subcommand help; and not __fish_seen_subcommand_from classify log run export model config completions help" -f -a "log" -d 'Print the audit log; a torn or damaged record is reported and skipped'
complete -c scanside-device -n "__fish_scanside_device_using_subcommand help; and not __fish_seen_subcommand_from classify log run export model config completions help" -f -a "run" -d 'The appliance loop: button, LEDs, inbox, audit log'
complete -c scanside-device -n "__fish_scanside_device_using_subcommand help; and not __fish_seen_subcommand_from classify log run export model config completions help" -f -a "export" -d 'Write the audit records since a time, with the archived scans and overlays they refer to, to one bundle file for the host. Changes nothing on the device'
complete -c scanside-device -n "__fish_scanside_device_using_subcommand help; and not __fish_seen_subcommand_from classify log run export model config completions help" -f -a "model" -d 'Install a new model, roll back to the previous one, or show both. The configured `model` path becomes a link swapped atomically; a running appliance switches within seconds and records the change'
complete -c scanside-device -n "__fish_scanside_device_using_subcommand help; and not __fish_seen_subcommand_from classify log run export model config completions help" -f -a "config" -d 'Check the configuration without starting the box: exit 0 and a summary if it is valid, 78 (EX_CONFIG) with the reason if not'
complete -c scanside-device -n "__fish_scanside_device_using_subcommand help; and not __fish_seen_subcommand_from classify log run export model config completions help" -f -a "completions" -d 'Print a shell completion script (bash, zsh, fish, elvish, powershell); the .deb installs bash, zsh and fish ones'
complete -c scanside-device -n "__fish_scanside_device_using_subcommand help; and not __fish_seen_subcommand_from classify log run export model config completions help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c scanside-device -n "__fish_scanside_device_using_subcommand help; and __fish_seen_subcommand_from model" -f -a "install" -d 'Check a model file (manifest, tract, one inference) and put it in service; the current model becomes the previous one'
complete -c scanside-device -n "__fish_scanside_device_using_subcommand help; and __fish_seen_subcommand_from model" -f -a "rollback" -d 'Put the previous model back in service (checked first)'
complete -c scanside-device -n "__fish_scanside_device_using_subcommand help; and __fish_seen_subcommand_from model" -f -a "status" -d 'Show the current and previous model'
complete -c scanside-device -n "__fish_scanside_device_using_subcommand help; and __fish_seen_subcommand_from config" -f -a "check" -d 'Parse and validate a configuration file'
