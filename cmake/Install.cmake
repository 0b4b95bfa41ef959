# What `cmake --install` puts where (packaging/README.md): the programs, the guest agent, the
# systemd units and their defaults files, and the docs; plus a .deb through CPack
# (`cpack -G DEB` in a build tree). Kept in this one file so the layout is read in one place.
include(GNUInstallDirs)

# The daemons and tools. The jailer goes next to the worker: the worker looks for it there first
# (runtime/src/jail/jailer.cc, default_jailer_binary).
install(TARGETS paddock-broker paddock-worker paddock-jailer paddock paddock-load
        RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
# The guest agent runs inside the VMs, never on the host: tools/build-guest-image.sh --agent takes
# it from here.
install(TARGETS paddock-agent RUNTIME DESTINATION ${CMAKE_INSTALL_LIBEXECDIR}/paddock)
# The image builders and their definitions, which an operator runs to make --image-dir/--image-root.
install(PROGRAMS tools/build-guest-image.sh tools/build-image.sh
        DESTINATION ${CMAKE_INSTALL_DATADIR}/paddock/tools)
install(DIRECTORY tools/images DESTINATION ${CMAKE_INSTALL_DATADIR}/paddock/tools)

# systemd: units with the install prefix's paths (filled in at install time, so that
# `cmake --install --prefix P` and CPack's /usr both get theirs), the defaults files they read,
# the broker's user.
set(PADDOCK_SYSTEMD_UNIT_DIR "lib/systemd/system" CACHE STRING
    "where the systemd units go, relative to the install prefix")
foreach(unit paddock-broker.service paddock-worker.service)
  install(CODE "
    set(PADDOCK_BIN_DIR \"\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_BINDIR}\")
    set(PADDOCK_DOC_DIR \"\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_DOCDIR}\")
    configure_file(\"${PROJECT_SOURCE_DIR}/packaging/systemd/${unit}\"
                   \"${PROJECT_BINARY_DIR}/packaging/${unit}\" @ONLY)")
  install(FILES ${PROJECT_BINARY_DIR}/packaging/${unit} DESTINATION ${PADDOCK_SYSTEMD_UNIT_DIR})
endforeach()
install(FILES packaging/sysusers/paddock.conf DESTINATION lib/sysusers.d)
# /etc/default/paddock-* (relative: under the prefix, as a package lays them; a /usr install puts
# them in <prefix>/etc/default, to be copied to /etc).
install(FILES packaging/default/paddock-broker packaging/default/paddock-worker
        DESTINATION ${CMAKE_INSTALL_SYSCONFDIR}/default)

# Docs: the READMEs an operator reads, at their repository paths.
install(FILES README.md BENCHMARKS.md schemas/PROTOCOL.md DESTINATION ${CMAKE_INSTALL_DOCDIR})
install(FILES broker/README.md DESTINATION ${CMAKE_INSTALL_DOCDIR}/broker)
install(FILES worker/README.md DESTINATION ${CMAKE_INSTALL_DOCDIR}/worker)
install(FILES runtime/README.md DESTINATION ${CMAKE_INSTALL_DOCDIR}/runtime)
install(FILES packaging/README.md DESTINATION ${CMAKE_INSTALL_DOCDIR}/packaging)
install(DIRECTORY docs/ DESTINATION ${CMAKE_INSTALL_DOCDIR}/docs)

# cpack -G DEB: one package with all of the above. Its dependencies are the shared libraries the
# binaries link (dpkg-shlibdeps finds them) and QEMU, which the worker starts.
set(CPACK_PACKAGE_NAME paddock)
set(CPACK_PACKAGE_VENDOR "Paddock")
set(CPACK_PACKAGE_CONTACT "Paddock maintainers")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "Job broker and workers running jobs in jailed microVMs")
set(CPACK_GENERATOR DEB)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "qemu-system-x86 (>= 1:8.2), iproute2, iptables")
set(CPACK_DEBIAN_PACKAGE_SECTION admin)
include(CPack)
