# bash completion for egressctl: commands, options, and sandbox ids from the running egressd
# (asked with a 1 s timeout, so a stuck daemon never stalls the shell).
_egressctl() {
  local cur prev words cword
  _init_completion 2>/dev/null || { cur=${COMP_WORDS[COMP_CWORD]}; prev=${COMP_WORDS[COMP_CWORD-1]}; words=("${COMP_WORDS[@]}"); cword=$COMP_CWORD; }
  local commands="health list get set delete check secrets ca conns denials"
  local options="--socket --json --timeout --version --help"
  case "$prev" in
    --socket|--file) COMPREPLY=($(compgen -f -- "$cur")); return ;;
    --default) COMPREPLY=($(compgen -W "allow deny" -- "$cur")); return ;;
    --mode) COMPREPLY=($(compgen -W "enforce audit" -- "$cur")); return ;;
    --qtype) COMPREPLY=($(compgen -W "A AAAA CNAME HTTPS SVCB TXT MX NS SRV" -- "$cur")); return ;;
    --timeout|--source|--allow|--deny|--host|--ip|--port|--gateway|--if-match) return ;;
  esac
  local command="" i socket=()
  for ((i = 1; i < cword; i++)); do
    case "${words[i]}" in
      --socket) socket=(--socket "${words[i+1]}"); i=$((i + 1)) ;;
      --timeout|--file|--default|--mode|--qtype|--source|--allow|--deny|--host|--ip|--port|--gateway|--if-match) i=$((i + 1)) ;;
      -*) ;;
      *) [[ -z $command ]] && command=${words[i]} ;;
    esac
  done
  if [[ -z $command ]]; then
    COMPREPLY=($(compgen -W "$commands $options" -- "$cur"))
    return
  fi
  case "$command" in
    set) options="$options --file --source --allow --deny --default --mode --gateway --if-match" ;;
    check) options="$options --host --ip --port --qtype --batch" ;;
  esac
  if [[ $cur == -* ]]; then
    COMPREPLY=($(compgen -W "$options" -- "$cur"))
  elif [[ $command =~ ^(get|set|delete|check|secrets|conns|denials)$ ]]; then
    local ids
    ids=$(egressctl "${socket[@]}" --timeout 1 --json list 2>/dev/null |
          sed -n 's/^ *"id": "\(.*\)",\{0,1\}$/\1/p')
    COMPREPLY=($(compgen -W "$ids" -- "$cur"))
  fi
}
complete -F _egressctl egressctl
