# `cmake --install`: the binary in bin/, the example config in etc/netsvr/, the systemd unit in
# lib/systemd/system/, the docs in share/doc/netsvr/. With the prefix /usr (the Debian package)
# the config goes to /etc/netsvr, as GNUInstallDirs does for sysconfdir.
include(GNUInstallDirs)

install(TARGETS netsvr RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(FILES README.md docs/BENCHMARKS.md docs/CLUSTER.md docs/COMPRESSION.md docs/DESIGN.md
              docs/PERFORMANCE.md
        DESTINATION ${CMAKE_INSTALL_DOCDIR})
# The prefix is known only when installing (cpack and --prefix choose it then), so the config
# and the unit are written by a script at install time.
install(CODE "set(NETSVR_SOURCE_DIR \"${CMAKE_SOURCE_DIR}\")
              set(NETSVR_STAGE_DIR \"${CMAKE_BINARY_DIR}/packaging\")")
install(SCRIPT packaging/install_config.cmake)
