# The operator image: the static binary built by `make build` on the host
# (no registry is reachable here, so no golang base image), on scratch.
# hack/images.sh builds it with a context holding only the binary.
FROM scratch
COPY mqtt-operator /mqtt-operator
USER 0
EXPOSE 7950 7951
ENTRYPOINT ["/mqtt-operator"]
CMD ["--data-dir", "/data"]
